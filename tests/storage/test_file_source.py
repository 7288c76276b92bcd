"""A followed log file as operators rotate it: renamed and re-created, copied and
truncated, replaced by another file — against a real file and real storage."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import trio

from trio_sync.ingest import Ingestor
from trio_sync.ingest.runner import source_offset
from trio_sync.roomlog import RoomLog, dumps_lines
from trio_sync.sources.file import file_epoch, file_source, follow_file
from trio_sync.storage import Conn, Engine

from .support import ALICE, ROOM, Message, event_id_of, stored_events
from .test_runner import Progress, start_follower


def _messages(n: int) -> list[Message]:
    log = RoomLog()
    out = log.create_room(ROOM, ALICE)
    out += [log.message(ROOM, ALICE, f"message {i}") for i in range(n - len(out))]
    return out


async def _ids(engine: Engine) -> list[str]:
    return [event_id for _, event_id in await stored_events(engine)]


async def _offsets(conn: Conn) -> dict[str, tuple[int, str | None]]:
    """Every stored position: source name -> (offset, epoch)."""
    rows = await conn.fetch("SELECT source, position, epoch FROM ingest_offsets")
    return {str(r[0]): (int(r[1]), r[2]) for r in rows}


def _at_end(path: Path) -> tuple[int, str]:
    """The stored position of the file now at ``path`` once it is consumed whole."""
    st = path.stat()
    return st.st_size, file_epoch(st)


async def _until(engine: Engine, ids: list[str]) -> None:
    for _ in range(2000):
        if await _ids(engine) == ids:
            return
        await trio.sleep(0.01)
    assert await _ids(engine) == ids


def _transitions(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


async def test_rename_and_recreate_finishes_the_old_file_then_reads_the_new(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = _messages(14)
    path, rotated = tmp_path / "room.log", tmp_path / "room.log.1"
    path.write_bytes(dumps_lines(messages[:6]))
    progress = Progress()
    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, progress)
        await _until(engine, [event_id_of(m) for m in messages[:6]])
        old_epoch = file_epoch(path.stat())

        path.rename(rotated)
        with rotated.open("ab") as f:  # the writer finishes its last lines in the old file
            f.write(dumps_lines(messages[6:8]))
        path.write_bytes(dumps_lines(messages[8:]))
        await _until(engine, [event_id_of(m) for m in messages])
        nursery.cancel_scope.cancel()

    # One position per path, now counted in the new file's identity.
    assert file_epoch(path.stat()) != old_epoch
    assert await engine.read(_offsets) == {file_source(str(path)): _at_end(path)}
    assert len(_transitions(caplog, "was rotated")) == 1


async def test_copy_truncate_restarts_from_the_start_after_a_warning(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = _messages(12)
    path = tmp_path / "room.log"
    path.write_bytes(dumps_lines(messages[:8]))
    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, Progress())
        await _until(engine, [event_id_of(m) for m in messages[:8]])
        source, epoch = file_source(str(path)), file_epoch(path.stat())

        shutil.copyfile(path, tmp_path / "room.log.1")
        with path.open("r+b") as f:
            f.truncate(0)
        for _ in range(2000):  # the restart from 0 is committed
            if await engine.read(source_offset, source) == 0:
                break
            await trio.sleep(0.01)
        with path.open("ab") as f:
            f.write(dumps_lines(messages[8:]))
        await _until(engine, [event_id_of(m) for m in messages])
        nursery.cancel_scope.cancel()

    assert file_epoch(path.stat()) == epoch  # the same file all along
    assert await engine.read(_offsets) == {source: _at_end(path)}
    assert len(_transitions(caplog, "was truncated")) == 1


async def test_another_file_moved_into_place_is_read_from_its_start(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = _messages(16)
    path, other = tmp_path / "room.log", tmp_path / "incoming.log"
    path.write_bytes(dumps_lines(messages[:5]))
    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, Progress())
        await _until(engine, [event_id_of(m) for m in messages[:5]])
        # A longer file replaces it atomically: its first lines lie below the old offset.
        other.write_bytes(dumps_lines(messages[5:]))
        assert other.stat().st_size > path.stat().st_size
        os.replace(other, path)
        await _until(engine, [event_id_of(m) for m in messages])
        nursery.cancel_scope.cancel()
    assert len(_transitions(caplog, "was rotated")) == 1


async def test_a_file_replaced_while_stopped_is_read_from_its_start(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(16)
    path, other = tmp_path / "room.log", tmp_path / "next.log"
    path.write_bytes(dumps_lines(messages[:5]))
    await follow_file(str(path), ingestor, follow=False)
    other.write_bytes(dumps_lines(messages[5:]))
    os.replace(other, path)
    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages]


async def test_a_file_rewritten_in_place_while_stopped_is_read_again(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = _messages(16)
    path = tmp_path / "room.log"
    path.write_bytes(dumps_lines(messages[:5]))
    await follow_file(str(path), ingestor, follow=False)
    epoch = file_epoch(path.stat())
    with path.open("r+b") as f:  # same inode, new content (copy-truncate, then growth)
        f.truncate(0)
        f.write(b"\n" + dumps_lines(messages[5:]))
    assert file_epoch(path.stat()) == epoch
    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages]
    assert len(_transitions(caplog, "no line end at its consumed offset")) == 1


def _log_read_up_to_4(tmp_path: Path) -> tuple[list[Message], Path, bytes]:
    """A log of 10 messages, ``room.log``, and its first 4 lines (an earlier offset)."""
    messages = _messages(10)
    path = tmp_path / "room.log"
    head = dumps_lines(messages[:4])
    path.write_bytes(head + dumps_lines(messages[4:]))
    return messages, path, head


async def _store_offset(engine: Engine, source: str, position: int) -> None:
    """An offset row written as an earlier release wrote it (no epoch)."""

    async def op(conn: Conn) -> None:
        await conn.execute(
            "INSERT INTO ingest_offsets (source, position) VALUES ($1, $2)", source, position
        )

    await engine.write(op)


async def test_an_offset_stored_without_identity_is_taken_over_by_the_file(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages, path, head = _log_read_up_to_4(tmp_path)
    by_path = "file:" + str(path.absolute())
    # As releases before file identities stored it: keyed by the absolute path.
    await _store_offset(engine, by_path, len(head))
    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages[4:]]  # not re-read
    assert await engine.read(_offsets) == {by_path: _at_end(path)}


async def test_an_offset_stored_under_the_files_identity_is_taken_over_once(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages, path, head = _log_read_up_to_4(tmp_path)
    by_identity = f"{file_source(str(path))}#{file_epoch(path.stat())}"

    # Another file whose name merely starts like it keeps its own offset.
    namesake = tmp_path / "room.log#notes"
    namesake.write_bytes(b"\n")
    await follow_file(str(namesake), ingestor, follow=False)
    # As releases before epochs stored it: the file's identity in the source name.
    await _store_offset(engine, by_identity, len(head))
    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages[4:]]  # not re-read
    assert await engine.read(_offsets) == {
        file_source(str(path)): _at_end(path),
        file_source(str(namesake)): _at_end(namesake),
    }


async def test_missing_path_while_following_is_logged_once(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    messages = _messages(9)
    path = tmp_path / "room.log"
    path.write_bytes(dumps_lines(messages[:5]))
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, Progress())
        await _until(engine, [event_id_of(m) for m in messages[:5]])
        path.rename(tmp_path / "room.log.1")
        await trio.sleep(0.2)  # many polls with the path missing
        path.write_bytes(dumps_lines(messages[5:]))
        await _until(engine, [event_id_of(m) for m in messages])
        nursery.cancel_scope.cancel()
    assert len(_transitions(caplog, "was removed or renamed")) == 1
    assert len(_transitions(caplog, "was rotated")) == 1
