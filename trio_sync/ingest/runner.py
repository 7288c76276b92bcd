"""The ingest task and its sources.

One :class:`Ingestor` task applies batches strictly in the order they are submitted,
whatever the source (a followed file, HTTP push, in-process calls): each batch is one
write transaction, then the notifier is told what changed. :func:`follow_file` reads a
JSON-lines log from the offset stored for it, in batches, waiting for a partial last line
to be completed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from ..errors import StorageError
from ..notifier import Notifier
from ..storage import Conn, Engine
from ..tokens import StreamToken
from .apply import Applied, Item, apply_batch
from .messages import BadMessage, parse_message
from .user_messages import TypingUpdate

log = logging.getLogger(__name__)


def parse_items(raws: Sequence[bytes], offsets: Sequence[int | None]) -> list[Item]:
    """Parse each raw message; an unparseable one becomes an Item carrying its reason."""
    items = []
    for raw, offset in zip(raws, offsets, strict=True):
        try:
            message: object = parse_message(raw)
        except BadMessage as exc:
            message = exc
        items.append(Item(offset, raw, message))  # type: ignore[arg-type]
    return items


async def current_token(conn: Conn) -> StreamToken:
    """The committed position of every stream."""
    rows = await conn.fetch("SELECT stream, position FROM streams")
    values = {r[0]: int(r[1]) for r in rows}
    return StreamToken(*(values.get(name, 0) for name in StreamToken.STREAMS))


async def source_offset(conn: Conn, source: str) -> int:
    """How far ``source`` has been consumed (0 if never)."""
    value = await conn.fetchval("SELECT position FROM ingest_offsets WHERE source = $1", source)
    return 0 if value is None else int(value)


@dataclass
class _Job:
    source: str
    items: list[Item]
    end_offset: int | None
    done: trio.Event = field(default_factory=trio.Event)
    result: Applied | None = None
    error: BaseException | None = None


class Ingestor:
    """The single ingest task: applies submitted batches in order."""

    def __init__(self, engine: Engine, notifier: Notifier, retry_delay: float = 1.0) -> None:
        self.engine = engine
        self.notifier = notifier
        self._retry_delay = retry_delay
        self._send, self._receive = trio.open_memory_channel[_Job](0)

    async def submit(
        self,
        source: str,
        raws: Sequence[bytes],
        offsets: Sequence[int | None] | None = None,
        end_offset: int | None = None,
    ) -> Applied:
        """Queue a batch and wait until it is committed and notified.

        A checkpoint. If cancelled while queued, nothing is applied; once taken by the
        ingest task the batch is applied whole (the caller just no longer waits).
        """
        items = parse_items(raws, offsets if offsets is not None else [None] * len(raws))
        return await self.submit_items(source, items, end_offset)

    async def submit_items(
        self, source: str, items: list[Item], end_offset: int | None = None
    ) -> Applied:
        """Like :meth:`submit`, for messages already parsed (or rejected) by the source."""
        job = _Job(source, items, end_offset)
        await self._send.send(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ingest task; runs until cancelled. Ready as soon as it accepts batches."""
        task_status.started()
        async for job in self._receive:
            try:
                job.result = await self._apply(job)
            except Exception as exc:
                job.error = exc
            finally:
                job.done.set()

    async def _apply(self, job: _Job) -> Applied:
        typing = [i.message for i in job.items if isinstance(i.message, TypingUpdate)]
        if job.items and len(typing) == len(job.items) and job.end_offset is None:
            # Typing is kept in memory only: nothing to write.
            applied = Applied(typing=typing, accepted=len(typing))
            applied.token = self.notifier.current
            await self.notifier.advance(applied)
            return applied
        try:
            applied = await self.engine.write(apply_batch, job.source, job.items, job.end_offset)
        except StorageError as exc:
            log.warning("batch from %s failed (%s); applying one by one", job.source, exc)
            applied = await self._one_by_one(job)
        await self.notifier.advance(applied)
        for item in job.items:
            if isinstance(item.message, BadMessage):
                log.warning(
                    "rejected log message from %s at offset %s: %s",
                    job.source,
                    item.offset,
                    item.message,
                )
        if applied.rejected:
            log.warning("%d message(s) from %s recorded as rejected", applied.rejected, job.source)
        return applied

    async def _one_by_one(self, job: _Job) -> Applied:
        total = Applied()
        last = len(job.items) - 1
        for i, item in enumerate(job.items):
            end = job.end_offset if i == last else job.items[i + 1].offset
            delay = self._retry_delay
            while True:
                try:
                    one = await self.engine.write(apply_batch, job.source, [item], end)
                    break
                except StorageError as exc:
                    reason = f"storage error: {exc}"
                try:
                    bad = Item(item.offset, item.raw, BadMessage(reason))
                    one = await self.engine.write(apply_batch, job.source, [bad], end)
                    break
                except StorageError as exc:
                    # The database itself is failing: nothing may be lost, so wait and retry.
                    log.error("cannot write to the database (%s); retrying in %.0fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 30)
            total.merge(one)
        return total


def file_source(path: str) -> str:
    """The source name a log file's offset is stored under."""
    return "file:" + os.path.abspath(path)


async def follow_file(
    path: str,
    ingestor: Ingestor,
    *,
    follow: bool = True,
    batch_lines: int = 500,
    poll_interval: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Ingest the JSON-lines log at ``path`` from its stored offset.

    With ``follow``, keeps reading as the file grows (and waits for it to appear) until
    cancelled; otherwise returns at the end of the last complete line. A partial last
    line is never read as a message: it waits for its newline. ``progress(done, total)``
    is called with byte offsets after each batch. Cancellation between batches loses
    nothing: the next start resumes from the committed offset.
    """
    source = file_source(path)
    offset = await ingestor.engine.read(source_offset, source)
    task_status.started()
    apath = trio.Path(path)
    while not await apath.exists():
        if not follow:
            raise FileNotFoundError(path)
        await trio.sleep(poll_interval)
    async with await trio.open_file(path, "rb") as f:
        await f.seek(offset)
        pending = b""
        while True:
            chunk = await f.read(1 << 20)
            if not chunk:
                size = (await apath.stat()).st_size
                if size < offset + len(pending):
                    log.error("log %s shrank below the consumed offset %d; waiting", path, offset)
                if not follow:
                    if progress is not None:
                        progress(offset, size)
                    return
                await trio.sleep(poll_interval)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            raws: list[bytes] = []
            offsets: list[int | None] = []
            position = offset
            for line in lines:
                position += len(line) + 1
                if line.strip():
                    raws.append(line)
                    offsets.append(position - len(line) - 1)
                if len(raws) >= batch_lines:
                    await ingestor.submit(source, raws, offsets, position)
                    offset, raws, offsets = position, [], []
            if position != offset:
                await ingestor.submit(source, raws, offsets, position)
                offset = position
            if progress is not None:
                progress(offset, max(offset, (await apath.stat()).st_size))
