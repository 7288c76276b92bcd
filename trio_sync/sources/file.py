"""A JSON-lines log file, followed as it grows and as it is rotated.

The file is followed by identity (device and inode), as ``tail -F`` does: when the path
comes to name another file (log rotation by rename and re-create, or a file put in its
place), the old file is read to its end, then the new one from offset 0. A file that
shrinks below the consumed offset (rotation by copy and truncate) is read again from 0,
after a warning. Each transition is logged once.

The consumed offset is committed under ``file:ABSPATH`` with the file's identity
``DEVICE:INODE`` as its epoch (:class:`~trio_sync.sources.base.Position`), in the same
transaction as the data it covers: a restart resumes exactly where the last committed
batch ended, and another file found at the path is read from its start. An offset stored
without an identity (by the path alone, as early releases kept it) is taken over once,
if the file has a line end just before it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..ingest.apply import Applied
from ..ingest.runner import Ingestor, parse_items
from ..observability.metrics import report_lag
from .base import Batch, Position, run_source

log = logging.getLogger(__name__)

#: ``progress(done_bytes, total_bytes, messages_so_far)`` after each batch.
Progress = Callable[[int, int, int], None]


def file_source(path: str) -> str:
    """The source name the offset of the file at ``path`` is stored under."""
    return "file:" + os.path.abspath(path)


def file_epoch(st: os.stat_result) -> str:
    """A file's identity, the epoch its offsets count in: ``DEVICE:INODE``."""
    return f"{st.st_dev}:{st.st_ino}"


async def _stat(path: str) -> os.stat_result | None:
    try:
        return await trio.Path(path).stat()
    except FileNotFoundError:
        return None


@dataclass
class _Open:
    """The file being read, and how far."""

    f: Any  # trio's async file object
    st: os.stat_result
    offset: int
    pending: bytes = b""

    @property
    def epoch(self) -> str:
        return file_epoch(self.st)

    def same_file(self, other: os.stat_result | None) -> bool:
        return other is not None and (other.st_dev, other.st_ino) == (
            self.st.st_dev,
            self.st.st_ino,
        )

    def size(self) -> int:
        return int(os.fstat(self.f.fileno()).st_size)


class FileSource:
    """The JSON-lines log at ``path`` as a :class:`~trio_sync.sources.base.Source`.

    With ``follow``, its batches go on as the file grows, wait for it to appear, and
    follow rotation and truncation (see the module docstring) until cancelled;
    otherwise they end at the end of the last complete line (a missing file is
    FileNotFoundError). A partial last line is never read as a message while the file
    is current: it waits for its newline. At most ``batch_lines`` messages per batch.
    """

    def __init__(
        self,
        path: str,
        *,
        follow: bool = True,
        batch_lines: int = 500,
        poll_interval: float = 0.2,
        progress: Progress | None = None,
    ) -> None:
        self.path = path
        self.label = os.path.abspath(path)
        self.name = file_source(path)
        self._follow = follow
        self._batch_lines = batch_lines
        self._poll = poll_interval
        self._progress = progress
        self._messages = 0

    async def _open(self) -> _Open | None:
        try:
            f = await trio.open_file(self.path, "rb")
        except FileNotFoundError:
            return None
        return _Open(f, os.fstat(f.fileno()), 0)

    async def _resume(self, cur: _Open, after: Position) -> bool:
        """Seek ``cur`` to where reading resumes; True if that is not ``after``."""
        offset = after.offset
        if after.epoch not in (None, cur.epoch):
            offset = 0
        elif offset > cur.st.st_size:
            log.warning(
                "log %s is shorter (%d bytes) than its consumed offset %d: it was truncated; "
                "reading it again from the start",
                self.path,
                cur.st.st_size,
                offset,
            )
            offset = 0
        elif offset:
            await cur.f.seek(offset - 1)
            if await cur.f.read(1) != b"\n":
                log.warning(
                    "log %s has no line end at its consumed offset %d: it is another file; "
                    "reading it from the start",
                    self.path,
                    offset,
                )
                offset = 0
        await cur.f.seek(offset)
        cur.offset = offset
        return offset != after.offset

    def _restart(self, cur: _Open) -> Batch:
        """Reading ``cur`` from 0 again, committed at once (with ``cur``'s identity)."""
        return Batch([], 0, cur, restart=0, epoch=cur.epoch)

    def _lines(self, cur: _Open, chunk: bytes, *, last: bool = False) -> list[Batch]:
        """Batches of the complete lines of ``cur.pending + chunk`` (and, with ``last``,
        of a final line without its newline); what is left stays pending."""
        cur.pending += chunk
        *lines, cur.pending = cur.pending.split(b"\n")
        spans = [(line, len(line) + 1) for line in lines]
        if last and cur.pending:
            spans.append((cur.pending, len(cur.pending)))
            cur.pending = b""
        out: list[Batch] = []
        raws: list[bytes] = []
        starts: list[int | None] = []
        ends: list[int | None] = []
        position = batched = cur.offset
        for line, length in spans:
            start, position = position, position + length
            if line.strip():
                raws.append(line)
                starts.append(start)
                ends.append(position)
            if len(raws) >= self._batch_lines:
                out.append(self._batch(cur, raws, starts, ends, position))
                raws, starts, ends, batched = [], [], [], position
        if position != batched:
            out.append(self._batch(cur, raws, starts, ends, position))
        cur.offset = position
        return out

    def _batch(
        self,
        cur: _Open,
        raws: list[bytes],
        starts: list[int | None],
        ends: list[int | None],
        end: int,
    ) -> Batch:
        self._messages += len(raws)
        return Batch(parse_items(raws, starts, ends), end, cur, epoch=cur.epoch)

    async def batches(self, after: Position) -> AsyncGenerator[Batch, None]:
        cur = await self._open()
        if cur is None:
            if not self._follow:
                raise FileNotFoundError(self.path)
            log.warning("log %s does not exist yet; it will be read once it appears", self.path)
            while cur is None:
                await trio.sleep(self._poll)
                cur = await self._open()
        missing_logged = False
        try:
            if await self._resume(cur, after):
                yield self._restart(cur)
            while True:
                chunk = await cur.f.read(1 << 20)
                if chunk:
                    for batch in self._lines(cur, chunk):
                        yield batch
                    continue
                size = cur.size()
                if size < cur.offset + len(cur.pending):
                    log.warning(
                        "log %s was truncated to %d bytes below the consumed offset %d; "
                        "reading it again from the start",
                        self.path,
                        size,
                        cur.offset + len(cur.pending),
                    )
                    await cur.f.seek(0)
                    cur.offset, cur.pending = 0, b""
                    yield self._restart(cur)
                    continue
                if not self._follow:
                    self._report(cur)
                    return
                at_path = await _stat(self.path)
                if at_path is None:
                    if not missing_logged:
                        log.warning(
                            "log %s was removed or renamed; waiting for a new file", self.path
                        )
                        missing_logged = True
                elif not cur.same_file(at_path):
                    # Rotated: the old file is finished, a last line without its newline
                    # included (nothing will complete it now); the new one read from 0.
                    while chunk := await cur.f.read(1 << 20):
                        for batch in self._lines(cur, chunk):
                            yield batch
                    for batch in self._lines(cur, b"", last=True):
                        yield batch
                    old, cur = cur, None
                    await old.f.aclose()
                    while cur is None:  # gone again already: wait for the next one
                        cur = await self._open()
                        if cur is None:
                            await trio.sleep(self._poll)
                    log.warning(
                        "log %s was rotated: finished the previous file at offset %d; "
                        "following the new file from its start",
                        self.path,
                        old.offset,
                    )
                    missing_logged = False
                    yield self._restart(cur)
                    continue
                await trio.sleep(self._poll)
        finally:
            if cur is not None:
                with trio.CancelScope(shield=True):
                    await cur.f.aclose()

    async def ack(self, batch: Batch) -> None:
        """Report the lag (bytes not yet consumed) and the progress after ``batch``."""
        cur: _Open = batch.token  # type: ignore[assignment]
        self._report(cur, batch.end)

    def _report(self, cur: _Open, done: int | None = None) -> None:
        done = cur.offset if done is None else done
        size = max(done, cur.size())
        report_lag(self.label, size - done)
        if self._progress is not None:
            self._progress(done, size, self._messages)


async def follow_file(
    path: str,
    ingestor: Ingestor,
    *,
    follow: bool = True,
    batch_lines: int = 500,
    poll_interval: float = 0.2,
    progress: Progress | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> Applied:
    """Ingest the JSON-lines log at ``path`` (a :class:`FileSource`) from its committed
    offset, through :func:`~trio_sync.sources.base.run_source`; return what was applied
    (only without ``follow``: following ends only by cancellation). Cancellation
    between batches loses nothing: the next start resumes from the committed offset."""
    source = FileSource(
        path,
        follow=follow,
        batch_lines=batch_lines,
        poll_interval=poll_interval,
        progress=progress,
    )
    return await run_source(source, ingestor, task_status=task_status)
