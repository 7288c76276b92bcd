"""Crash safety: ``trio-sync ingest`` SIGKILLed at arbitrary moments loses and doubles nothing.

A log of a few thousand messages is replayed by the real command in a subprocess, which is
killed again and again at growing delays, then run to completion. After every kill, what
is stored must be exactly the effect of a prefix of the log ending at the committed
offset; at the end, every event is stored once, at positions 1..N in log order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import trio

from trio_sync.ingest.runner import source_offset
from trio_sync.roomlog import RoomLog
from trio_sync.sources.file import file_source
from trio_sync.storage import Conn, open_engine

from .support import ALICE, BOB, CAROL, Message, event_id_of, pdu_of

ROOMS = [f"!room{i}:example.org" for i in range(4)]
BATCH_SIZE = 50


@dataclass(frozen=True)
class Line:
    raw: bytes
    end: int  # byte offset just past its newline
    event_id: str | None  # None for a malformed line
    is_invite: bool


def _write_log(path: Path, count: int = 2000) -> list[Line]:
    log = RoomLog()
    messages: list[Message | bytes] = []
    for room in ROOMS:
        messages += log.create_room(room, ALICE, name=room)
    i = 0
    while len(messages) < count:
        room = ROOMS[i % len(ROOMS)]
        step = i % 40
        if step == 7:
            messages.append(log.member(room, BOB, "invite", sender=ALICE))
        elif step == 13:
            messages.append(log.member(room, BOB, "join"))
        elif step == 21:
            messages.append(log.event(room, ALICE, "m.room.topic", {"topic": f"t{i}"}, ""))
        elif step == 29:
            messages.append(log.member(room, BOB, "leave"))
        elif step == 33:
            messages.append(log.member(room, CAROL, "join"))
        elif i % 397 == 5:
            messages.append(f'{{"type": "new_room_event", "broken": {i}'.encode())
        else:
            messages.append(log.message(room, ALICE, f"message {i}"))
        i += 1

    lines, data, end = [], bytearray(), 0
    for message in messages:
        raw = message if isinstance(message, bytes) else orjson.dumps(message)
        end += len(raw) + 1
        data += raw + b"\n"
        if isinstance(message, bytes):
            lines.append(Line(raw, end, None, False))
        else:
            content = pdu_of(message)["content"]
            invite = content.get("membership") == "invite"
            lines.append(Line(raw, end, event_id_of(message), invite))
    path.write_bytes(data)
    return lines


@dataclass(frozen=True)
class Stored:
    events: list[tuple[int, str]]
    invites: list[tuple[int, str]]
    rejected: list[bytes]
    offset: int


async def _stored(conn: Conn, source: str) -> Stored:
    events = await conn.fetch("SELECT pos, event_id FROM events ORDER BY pos")
    invites = await conn.fetch("SELECT pos, event_id FROM invites ORDER BY pos")
    rejected = await conn.fetch("SELECT raw FROM ingest_rejects ORDER BY id")
    return Stored(
        events=[(int(r[0]), r[1]) for r in events],
        invites=[(int(r[0]), r[1]) for r in invites],
        rejected=[bytes(r[0]) for r in rejected],
        offset=await source_offset(conn, source),
    )


async def _pdu_position(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT position FROM streams WHERE stream = 'pdu'"))


def _check_prefix(stored: Stored, lines: list[Line]) -> int:
    """Stored data must be exactly the effect of the lines before the committed offset."""
    consumed = [line for line in lines if line.end <= stored.offset]
    assert stored.offset in (0, *(line.end for line in lines)), "offset not at a line end"
    ids = [line.event_id for line in consumed if line.event_id is not None]
    assert stored.events == list(enumerate(ids, start=1))
    assert stored.rejected == [line.raw for line in consumed if line.event_id is None]
    invites = [line.event_id for line in consumed if line.is_invite]
    assert stored.invites == list(enumerate(invites, start=1))
    return len(consumed)


class Ingest:
    """``trio-sync ingest PATH --database URL --quiet``, run in a subprocess."""

    def __init__(self, db_url: str, path: Path) -> None:
        self.command = [
            sys.executable,
            "-m",
            "trio_sync.cli",
            "ingest",
            str(path),
            "--database",
            db_url,
            "--quiet",
        ]
        self.cwd = path.parent
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_SYNC_")}
        self.env["TRIO_SYNC_BATCH_SIZE"] = str(BATCH_SIZE)

    async def start(self) -> trio.Process:
        return await trio.lowlevel.open_process(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def run(self) -> bytes:
        done = await trio.run_process(
            self.command, cwd=self.cwd, env=self.env, capture_stdout=True, capture_stderr=True
        )
        return bytes(done.stdout)


async def _kill(process: trio.Process) -> bool:
    """SIGKILL ``process``; False if it had already finished (successfully)."""
    if process.poll() is not None:
        assert process.returncode == 0, "trio-sync ingest failed"
        return False
    process.send_signal(signal.SIGKILL)
    await process.wait()
    return True


async def test_sigkilled_ingest_loses_and_doubles_nothing(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "roomserver-output.jsonl"
    lines = _write_log(path)
    source = file_source(str(path))
    ingest = Ingest(db_url, path)

    async with open_engine(db_url) as observer:
        # Killed early: while starting up and opening the database.
        for delay in (0.05, 0.2):
            process = await ingest.start()
            await trio.sleep(delay)
            await _kill(process)
            _check_prefix(await observer.read(_stored, source), lines)

        # Killed while ingesting: once a batch has committed, after a varying extra delay
        # (right after a commit, or part-way through the next batches).
        interrupted_mid_way = 0
        for extra in (0, 0.005, 0.02, 0.04, 0.08):
            before = await observer.read(_pdu_position)
            process = await ingest.start()
            with trio.fail_after(30):
                # Polling another process's progress: there is nothing to wait on instead.
                while process.poll() is None and await observer.read(_pdu_position) == before:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            await trio.sleep(extra)
            killed = await _kill(process)
            done = _check_prefix(await observer.read(_stored, source), lines)
            if killed and 0 < done < len(lines):
                interrupted_mid_way += 1
            if not killed or done == len(lines):
                break
        assert interrupted_mid_way >= 3, "too few kills landed while the log was ingested"

        # Run to completion: every event exactly once, positions 1..N in log order.
        assert b"ingested" in await ingest.run()
        stored = await observer.read(_stored, source)
        assert _check_prefix(stored, lines) == len(lines)
        assert stored.offset == path.stat().st_size
        ids = [line.event_id for line in lines if line.event_id is not None]
        assert len(set(ids)) == len(ids)
        assert stored.events == list(enumerate(ids, start=1))

        # And once more: nothing is applied twice.
        await ingest.run()
        assert await observer.read(_stored, source) == stored
