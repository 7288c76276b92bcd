"""A JSON-lines log file, followed as it grows and as it is rotated.

The file is followed by identity (device and inode), as ``tail -F`` does: when the path
comes to name another file (log rotation by rename and re-create, or a file put in its
place), the old file is read to its end, then the new one from offset 0. A file that
shrinks below the consumed offset (rotation by copy and truncate) is read again from 0,
after a warning. Each transition is logged once.

The consumed offset is stored per file identity (:func:`file_source`), committed in the
same transaction as the data it covers, so a restart resumes exactly where the last
committed batch ended, and another file placed at the same path is read from its start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..ingest.apply import Applied
from ..ingest.runner import Ingestor, source_offset
from ..observability.metrics import report_lag
from ..storage import Conn

log = logging.getLogger(__name__)

#: ``progress(done_bytes, total_bytes, messages_so_far)`` after each batch.
Progress = Callable[[int, int, int], None]


def _identity_source(path: str, st: os.stat_result) -> str:
    return f"file:{os.path.abspath(path)}#{st.st_dev}:{st.st_ino}"


def file_source(path: str) -> str:
    """The source name the offset of the file now at ``path`` is stored under.

    It names the file's identity (``file:ABSPATH#DEVICE:INODE``, the path as it was
    when the file was opened): a different file at the same path has another.
    """
    return _identity_source(path, os.stat(path))


async def adopt_offset(conn: Conn, source: str, legacy: str) -> int:
    """The stored offset of ``source``; one stored under ``legacy`` (the path alone, as
    releases before identities kept it) becomes ``source``'s, once."""
    offset = await source_offset(conn, source)
    old = await conn.fetchval("SELECT position FROM ingest_offsets WHERE source = $1", legacy)
    if old is None:
        return offset
    await conn.execute("DELETE FROM ingest_offsets WHERE source = $1", legacy)
    if offset:
        return offset
    await conn.execute(
        "INSERT INTO ingest_offsets (source, position) VALUES ($1, $2) "
        "ON CONFLICT (source) DO UPDATE SET position = excluded.position",
        source,
        int(old),
    )
    return int(old)


async def forget_source(conn: Conn, source: str) -> None:
    """Drop the stored offset of a finished (rotated away) file, so that a later file
    that happens to reuse its inode is not mistaken for it."""
    await conn.execute("DELETE FROM ingest_offsets WHERE source = $1", source)


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
    source: str
    offset: int
    pending: bytes = b""

    def same_file(self, other: os.stat_result | None) -> bool:
        return other is not None and (other.st_dev, other.st_ino) == (
            self.st.st_dev,
            self.st.st_ino,
        )


class _Follower:
    def __init__(
        self,
        path: str,
        ingestor: Ingestor,
        batch_lines: int,
        progress: Progress | None,
    ) -> None:
        self.path = path
        self.label = os.path.abspath(path)
        self.ingestor = ingestor
        self.batch_lines = batch_lines
        self.progress = progress
        self.total = Applied()
        self.messages = 0

    async def open(self, *, fresh: bool) -> _Open | None:
        """Open the file at the path; ``fresh``: a file that appeared while following,
        read from 0 whatever is stored for its identity."""
        try:
            f = await trio.open_file(self.path, "rb")
        except FileNotFoundError:
            return None
        st = os.fstat(f.fileno())
        source = _identity_source(self.path, st)
        engine = self.ingestor.engine
        if fresh:
            offset = 0
            await engine.write(forget_source, source)
        else:
            offset = await engine.write(adopt_offset, source, "file:" + self.label)
            offset = await self._check_offset(f, st, offset)
        await f.seek(offset)
        return _Open(f, st, source, offset)

    async def _check_offset(self, f: Any, st: os.stat_result, offset: int) -> int:
        if offset > st.st_size:
            log.warning(
                "log %s is shorter (%d bytes) than its consumed offset %d: it was truncated; "
                "reading it again from the start",
                self.path,
                st.st_size,
                offset,
            )
            return 0
        if offset:
            await f.seek(offset - 1)
            if await f.read(1) != b"\n":
                log.warning(
                    "log %s has no line end at its consumed offset %d: it is another file; "
                    "reading it from the start",
                    self.path,
                    offset,
                )
                return 0
        return offset

    async def submit(
        self, cur: _Open, raws: list[bytes], offsets: list[int | None], end: int
    ) -> None:
        applied = await self.ingestor.submit(cur.source, raws, offsets, end)
        self.total.merge(applied)
        self.messages += len(raws)
        cur.offset = end

    async def read_available(self, cur: _Open) -> bool:
        """Apply every complete line now in the file; False if there was nothing new."""
        chunk = await cur.f.read(1 << 20)
        if not chunk:
            return False
        cur.pending += chunk
        *lines, cur.pending = cur.pending.split(b"\n")
        raws: list[bytes] = []
        offsets: list[int | None] = []
        position = cur.offset
        for line in lines:
            position += len(line) + 1
            if line.strip():
                raws.append(line)
                offsets.append(position - len(line) - 1)
            if len(raws) >= self.batch_lines:
                await self.submit(cur, raws, offsets, position)
                raws, offsets = [], []
        if position != cur.offset:
            await self.submit(cur, raws, offsets, position)
        await self.report(cur)
        return True

    async def report(self, cur: _Open) -> None:
        size = max(cur.offset, os.fstat(cur.f.fileno()).st_size)
        report_lag(self.label, size - cur.offset)
        if self.progress is not None:
            self.progress(cur.offset, size, self.messages)

    async def finish(self, cur: _Open) -> None:
        """The file has been rotated away: apply what is left, a last line without its
        newline included (nothing will complete it now)."""
        while await self.read_available(cur):
            pass
        if cur.pending.strip():
            end = cur.offset + len(cur.pending)
            await self.submit(cur, [cur.pending], [cur.offset], end)
            cur.pending = b""
        await self.ingestor.engine.write(forget_source, cur.source)
        await cur.f.aclose()

    async def restart_truncated(self, cur: _Open, size: int) -> None:
        log.warning(
            "log %s was truncated to %d bytes below the consumed offset %d; "
            "reading it again from the start",
            self.path,
            size,
            cur.offset + len(cur.pending),
        )
        await cur.f.seek(0)
        cur.pending = b""
        await self.submit(cur, [], [], 0)


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
    """Ingest the JSON-lines log at ``path`` from the offset stored for the file there.

    With ``follow``, keeps reading as the file grows, waits for it to appear, and
    follows rotation and truncation (see the module docstring) until cancelled;
    otherwise returns at the end of the last complete line, with what was applied.
    A partial last line is never read as a message while the file is current: it waits
    for its newline. Cancellation between batches loses nothing: the next start resumes
    from the committed offset. Without ``follow``, a missing file is FileNotFoundError.
    """
    follower = _Follower(path, ingestor, batch_lines, progress)
    task_status.started()
    cur = await follower.open(fresh=False)
    if cur is None:
        if not follow:
            raise FileNotFoundError(path)
        log.warning("log %s does not exist yet; it will be read once it appears", path)
        while cur is None:
            await trio.sleep(poll_interval)
            cur = await follower.open(fresh=False)
    missing_logged = False
    try:
        while True:
            if await follower.read_available(cur):
                continue
            size = os.fstat(cur.f.fileno()).st_size
            if size < cur.offset + len(cur.pending):
                await follower.restart_truncated(cur, size)
                continue
            if not follow:
                await follower.report(cur)
                return follower.total
            at_path = await _stat(path)
            if at_path is None:
                if not missing_logged:
                    log.warning("log %s was removed or renamed; waiting for a new file", path)
                    missing_logged = True
            elif not cur.same_file(at_path):
                old = cur
                await follower.finish(old)
                new = await follower.open(fresh=True)
                while new is None:  # gone again already: wait for the next one
                    await trio.sleep(poll_interval)
                    new = await follower.open(fresh=True)
                cur = new
                log.warning(
                    "log %s was rotated: finished the previous file at offset %d; "
                    "following the new file from its start",
                    path,
                    old.offset,
                )
                missing_logged = False
                continue
            await trio.sleep(poll_interval)
    finally:
        with trio.CancelScope(shield=True):
            await cur.f.aclose()
