"""Behaviours that were once wrong: each test names what a user would have seen."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from trio_sync.errors import StorageError
from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, Engine, open_engine

from .support import (
    ALICE,
    BOB,
    ROOM,
    client_event,
    event_id_of,
    ingest,
    pdu_of,
    query,
    redacted_event,
    redaction,
    with_body,
)


async def test_redaction_hides_content_from_the_next_state_events_prev_content(
    engine: Engine,
) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    leaked = log.event(ROOM, ALICE, "m.room.topic", {"topic": "my password is hunter2"}, "")
    fixed = log.event(ROOM, ALICE, "m.room.topic", {"topic": "oops"}, "")
    redact = redaction(log, ROOM, ALICE, event_id_of(leaked))
    await ingest(engine, [*setup, leaked, fixed, redact])
    before = await client_event(engine, event_id_of(fixed))
    assert before["unsigned"]["prev_content"] == {"topic": "my password is hunter2"}
    await ingest(engine, [redacted_event(event_id_of(leaked), pdu_of(redact))])
    after = await client_event(engine, event_id_of(fixed))
    assert "hunter2" not in orjson.dumps(after).decode()
    assert after["unsigned"]["prev_content"] == {}
    assert after["content"] == {"topic": "oops"}


async def test_redacted_invite_is_redacted_for_the_invitee(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Room")
    invite = log.member(ROOM, BOB, "invite", sender=ALICE, reason="offensive words")
    redact = redaction(log, ROOM, ALICE, event_id_of(invite))
    await ingest(engine, [*setup, invite, redact])
    await ingest(engine, [redacted_event(event_id_of(invite), pdu_of(redact))])
    rows = await query(
        engine, "SELECT event_json FROM invites WHERE event_id = $1", event_id_of(invite)
    )
    stored = orjson.loads(rows[0][0])
    assert "offensive" not in orjson.dumps(stored).decode()
    assert stored["content"] == {"membership": "invite"}
    # The invitee can still render the room it was invited to.
    names = [s for s in stored["unsigned"]["invite_room_state"] if s["type"] == "m.room.name"]
    assert names and names[0]["content"] == {"name": "Room"}


async def test_reads_cannot_write(engine: Engine) -> None:
    async def sneaky(conn: Conn) -> None:
        await conn.execute("INSERT INTO ingest_offsets (source, position) VALUES ('x', 1)")

    with pytest.raises(StorageError):
        await engine.read(sneaky)
    assert await query(engine, "SELECT source FROM ingest_offsets") == []


async def test_state_reset_that_drops_a_member_reports_it_as_no_longer_joined(
    engine: Engine,
) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    join = log.member(ROOM, BOB, "join")
    await ingest(engine, [*setup, join])
    state = log.current_state(ROOM)
    reset = log.event(ROOM, ALICE, "m.room.name", {"name": "after reset"}, "")
    reset = with_body(
        reset,
        rewrites_state=True,
        adds_state_event_ids=[
            state[("m.room.create", "")],
            state[("m.room.member", ALICE)],
            event_id_of(reset),
        ],
        removes_state_event_ids=[],
    )
    applied = await ingest(engine, [reset])
    assert (ROOM, BOB, "leave") in applied.memberships
    assert all(user != ALICE or m == "join" for _, user, m in applied.memberships)


async def test_unreachable_database_is_a_storage_error(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        bad = f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"
    else:
        bad = db_url.rpartition("/")[0] + "/trio_sync_no_such_database"
    with pytest.raises(StorageError):
        async with open_engine(bad):
            pass


async def test_error_inside_the_engine_context_reaches_the_caller_unchanged(db_url: str) -> None:
    with pytest.raises(ValueError, match="mine"):
        async with open_engine(db_url):
            raise ValueError("mine")
