"""The ingest task and its sources.

One :class:`Ingestor` task applies batches strictly in the order they are submitted,
whatever the source (a followed file, HTTP push, in-process calls; see ``sources/``):
each batch is one write transaction, then the notifier is told what changed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ..errors import StorageError
from ..notifier import Notifier
from ..observability.metrics import BATCH_COMMIT, INGEST_MESSAGES
from ..storage import Array, Conn, Engine
from ..tokens import StreamToken
from .apply import Applied, Item, apply_batch
from .messages import BadMessage, parse_message
from .user_messages import TypingUpdate

log = logging.getLogger(__name__)


def parse_items(
    raws: Sequence[bytes],
    offsets: Sequence[int | None],
    ends: Sequence[int | None] | None = None,
) -> list[Item]:
    """Parse each raw message; an unparseable one becomes an Item carrying its reason.

    ``ends``: each message's :attr:`Item.end`, when positions are not sequences.
    """
    items = []
    for i, (raw, offset) in enumerate(zip(raws, offsets, strict=True)):
        try:
            message: object = parse_message(raw)
        except BadMessage as exc:
            message = exc
        end = None if ends is None else ends[i]
        items.append(Item(offset, raw, message, end))  # type: ignore[arg-type]
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


_LEGACY_EPOCH = re.compile(r"[0-9]+:[0-9]+")


@dataclass(frozen=True, slots=True)
class Position:
    """How far a source has been consumed: ``offset``, counted in ``epoch``.

    The epoch names what the offsets count in, when that can be replaced under the same
    source name: a followed file's ``DEVICE:INODE``, a JetStream stream's creation time.
    ``None``: not known (never consumed, or stored by a release without epochs).
    """

    offset: int = 0
    epoch: str | None = None


async def stored_position(conn: Conn, source: str) -> Position:
    """The committed position of ``source``, in a write transaction.

    A position that releases before epochs stored under ``SOURCE#EPOCH`` (a followed
    file kept its identity in the name) is taken over, once: it becomes ``source``'s,
    unless ``source`` has one of its own, and the old rows are removed.
    """
    row = await conn.fetchrow(
        "SELECT position, epoch FROM ingest_offsets WHERE source = $1", source
    )
    prefix = source + "#"
    rows = await conn.fetch(
        "SELECT source, position FROM ingest_offsets "
        "WHERE substr(source, 1, $2) = $1 ORDER BY position DESC",
        prefix,
        len(prefix),
    )
    # Only ``#DEVICE:INODE`` suffixes: ``file:/x#y`` may be another file's own name.
    legacy = [r for r in rows if _LEGACY_EPOCH.fullmatch(str(r[0])[len(prefix) :])]
    if legacy:
        await conn.execute(
            "DELETE FROM ingest_offsets WHERE source = ANY($1)",
            Array([str(r[0]) for r in legacy]),
        )
        if row is None:
            position = Position(int(legacy[0][1]), str(legacy[0][0])[len(prefix) :])
            await conn.execute(
                "INSERT INTO ingest_offsets (source, position, epoch) VALUES ($1, $2, $3)",
                source,
                position.offset,
                position.epoch,
            )
            return position
    if row is None:
        return Position()
    return Position(int(row[0]), None if row[1] is None else str(row[1]))


@dataclass
class _Job:
    source: str
    items: list[Item]
    end_offset: int | None
    epoch: str | None
    done: trio.Event = field(default_factory=trio.Event)
    result: Applied | None = None
    error: BaseException | None = None


class Ingestor:
    """The single ingest task: applies submitted batches in order."""

    def __init__(self, engine: Engine, notifier: Notifier, retry_delay: float = 1.0) -> None:
        self.engine = engine
        self.notifier = notifier
        self._retry_delay = retry_delay
        #: True while :meth:`run` is accepting batches.
        self.running = False
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
        self,
        source: str,
        items: list[Item],
        end_offset: int | None = None,
        epoch: str | None = None,
    ) -> Applied:
        """Like :meth:`submit`, for messages already parsed (or rejected) by the source;
        ``end_offset`` is recorded as counted in ``epoch`` (see :class:`Position`)."""
        job = _Job(source, items, end_offset, epoch)
        await self._send.send(job)
        await job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ingest task; runs until cancelled. Ready as soon as it accepts batches."""
        self.running = True
        task_status.started()
        try:
            async for job in self._receive:
                try:
                    job.result = await self._apply(job)
                except Exception as exc:
                    job.error = exc
                finally:
                    job.done.set()
        finally:
            self.running = False

    async def _apply(self, job: _Job) -> Applied:
        typing = [i.message for i in job.items if isinstance(i.message, TypingUpdate)]
        if job.items and len(typing) == len(job.items) and job.end_offset is None:
            # Typing is kept in memory only: nothing to write.
            applied = Applied(typing=typing, accepted=len(typing))
            applied.token = self.notifier.current
            await self.notifier.advance(applied)
            return applied
        started = time.perf_counter()
        try:
            applied = await self.engine.write(
                apply_batch, job.source, job.items, job.end_offset, job.epoch
            )
        except StorageError as exc:
            log.warning("batch from %s failed (%s); applying one by one", job.source, exc)
            applied = await self._one_by_one(job)
        BATCH_COMMIT.observe(time.perf_counter() - started)
        await self.notifier.advance(applied)
        self._count(job.source, applied)
        for offset, reason in applied.rejects:
            log.warning("rejected log message from %s at offset %s: %s", job.source, offset, reason)
        log.debug(
            "batch from %s: %d applied, %d duplicates, %d rejected; now at %s",
            job.source,
            applied.accepted,
            applied.duplicates,
            applied.rejected,
            applied.token,
        )
        return applied

    @staticmethod
    def _count(source: str, applied: Applied) -> None:
        for outcome, n in (
            ("applied", applied.accepted),
            ("duplicate", applied.duplicates),
            ("rejected", applied.rejected),
        ):
            if n:
                INGEST_MESSAGES.labels(source, outcome).inc(n)

    async def _one_by_one(self, job: _Job) -> Applied:
        total = Applied()
        last = len(job.items) - 1
        for i, item in enumerate(job.items):
            # Each message's own end is committed with it (nothing, for a source without
            # positions), so a crash between two of them resumes at the next.
            end = None if job.end_offset is None else job.end_offset if i == last else item.reached
            delay = self._retry_delay
            while True:
                try:
                    one = await self.engine.write(apply_batch, job.source, [item], end, job.epoch)
                    break
                except StorageError as exc:
                    reason = f"storage error: {exc}"
                try:
                    bad = Item(item.offset, item.raw, BadMessage(reason), item.end)
                    one = await self.engine.write(apply_batch, job.source, [bad], end, job.epoch)
                    break
                except StorageError as exc:
                    # The database itself is failing: nothing may be lost, so wait and retry.
                    log.error("cannot write to the database (%s); retrying in %.0fs", exc, delay)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 30)
            total.merge(one)
        return total
