"""What a user's room lookups cost on SQLite does not grow with the rest of the database.

SQLite plans without statistics. These tests count the virtual-machine steps SQLite runs
for the lookups a complete sync starts with (the user's memberships, its rooms'
summaries, who may read what) before and after thousands of memberships of other users
in other rooms are stored: the count must stay about the same. An index that looks like
the best way in to a planner without statistics but leads to every membership of the
database (as one leading with the event type did) multiplies it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, open_engine
from trio_sync.storage.rooms import memberships_at, room_summaries
from trio_sync.storage.sqlite import _SqliteConn
from trio_sync.storage.visibility import load_access

from .support import ALICE, BOB, ingest

MINE = [f"!mine{n}:example.org" for n in range(3)]
OTHERS = 200  # other rooms ...
MEMBERS = 15  # ... of this many other users each


def _steps(path: Path, lookup: Callable[[Conn], Awaitable[Any]]) -> int:
    """SQLite VM steps (in hundreds) ``lookup`` runs on a connection of its own."""
    db = sqlite3.connect(path)
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    db.set_progress_handler(tick, 100)
    try:
        coro = lookup(_SqliteConn(db))
        try:
            coro.send(None)  # the connection's methods never suspend
        except StopIteration:
            pass
        else:
            raise AssertionError("a lookup suspended")
    finally:
        db.close()
    return count


def _lookups(at: int) -> dict[str, Callable[[Conn], Awaitable[Any]]]:
    return {
        "memberships": lambda c: memberships_at(c, BOB, at),
        "summaries": lambda c: room_summaries(c, MINE, at, BOB),
        "access": lambda c: load_access(c, BOB, MINE, at),
    }


async def _database(path: Path, others: int) -> int:
    """``others`` rooms of other users, then the user's rooms; the position reached."""
    log = RoomLog("example.org")
    async with open_engine(f"sqlite:///{path}") as engine:
        for n in range(others):
            room = f"!other{n}:example.org"
            members = [log.member(room, f"@u{n}_{k}:example.org", "join") for k in range(MEMBERS)]
            await ingest(engine, [*log.create_room(room, ALICE), *members])
        for room in MINE:
            await ingest(engine, [*log.create_room(room, ALICE), log.member(room, BOB, "join")])
        return (await ingest(engine, [log.message(MINE[0], ALICE, "hi")])).token.pdu


async def test_room_lookups_do_not_walk_other_rooms(tmp_path: Path) -> None:
    alone, crowded = tmp_path / "alone.db", tmp_path / "crowded.db"
    at_alone = await _database(alone, 0)
    at_crowded = await _database(crowded, OTHERS)
    before = {name: _steps(alone, lookup) for name, lookup in _lookups(at_alone).items()}
    after = {name: _steps(crowded, lookup) for name, lookup in _lookups(at_crowded).items()}
    for name in before:
        # The same rows read; a little more for deeper indexes.
        assert after[name] <= 2 * before[name] + 5, (name, before, after)
