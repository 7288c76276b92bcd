"""Events as stored by ingest (and as migration 21 rewrote them) are served with the same
JSON as parsing, completing and dumping them gives."""

from __future__ import annotations

from typing import Any

import orjson

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, Engine, migrate
from trio_sync.storage.rooms import TimelineEvent, events_page
from trio_sync.storage.visibility import load_access
from trio_sync.sync.timeline import Viewer

from ..served import reference_serve
from .support import (
    ALICE,
    BOB,
    ROOM,
    event_id_of,
    ingest,
    pdu_of,
    query,
    redacted_event,
    redaction,
)

NOW = 1_800_000_000_000


def viewers() -> list[Viewer]:
    return [
        Viewer(ALICE, session_id=1, now_ms=NOW),
        Viewer(BOB, session_id=1, now_ms=NOW),
        Viewer(ALICE, session_id=2),
        Viewer(ALICE, session_id=1, now_ms=NOW, fields=("content.body", "unsigned")),
    ]


async def serve_all(engine: Engine) -> list[tuple[str, dict[str, Any], str]]:
    """Every event of the room as each viewer gets it: (event ID, served, stored text)."""

    async def read(conn: Conn) -> tuple[list[TimelineEvent], dict[str, Any]]:
        events = await events_page(conn, ROOM, 0, 1 << 40, 100, newest_first=False)
        upto = events[-1].pos
        access = {u: (await load_access(conn, u, [ROOM], upto))[ROOM] for u in (ALICE, BOB)}
        return events, access

    events, access = await engine.read(read)
    out = []
    for viewer in viewers():
        for ev in events:
            relations = {"m.thread": {"count": 1}} if "thread" in ev.json else None
            served = viewer.serve(ev, access[viewer.user_id], relations)
            expected = reference_serve(viewer, ev, access[viewer.user_id], relations)
            assert orjson.loads(served) == orjson.loads(expected), ev.event_id
            out.append((ev.event_id, orjson.loads(served), ev.json))
    return out


async def test_stored_events_are_served_as_parsed_and_dumped(engine: Engine) -> None:
    log = RoomLog()
    spam = log.message(ROOM, BOB, "spam")
    redact = redaction(log, ROOM, ALICE, event_id_of(spam))
    sent = log.message(ROOM, ALICE, "hi, 🎉", txn_id="t-1")
    await ingest(
        engine,
        [
            *log.create_room(ROOM, ALICE, name="n"),
            log.member(ROOM, BOB, "join"),
            sent,
            log.message(ROOM, BOB, 'the word "unsigned"'),
            log.event(ROOM, BOB, "m.room.message", {"body": "thread", "unsigned": {"age": 1}}),
            log.event(ROOM, ALICE, "m.room.topic", {"topic": "one"}, ""),
            log.event(ROOM, ALICE, "m.room.topic", {"topic": "two"}, ""),
            spam,
            redact,
            redacted_event(event_id_of(spam), pdu_of(redact)),
        ],
    )
    served = await serve_all(engine)
    mine = [e for i, e, _ in served if i == event_id_of(sent)]
    assert [e["unsigned"] for e in mine] == [
        {
            "age": NOW - pdu_of(sent)["origin_server_ts"],
            "membership": "join",
            "transaction_id": "t-1",
        },
        {"age": NOW - pdu_of(sent)["origin_server_ts"], "membership": "join"},
        {"membership": "join"},
        {
            "age": NOW - pdu_of(sent)["origin_server_ts"],
            "membership": "join",
            "transaction_id": "t-1",
        },
    ]
    redacted = next(e for i, e, _ in served if i == event_id_of(spam))
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == event_id_of(redact)


async def test_events_rewritten_by_migration_21_are_served_as_parsed_and_dumped(
    engine: Engine,
) -> None:
    """Migration 21 leaves PostgreSQL's ``jsonb`` text (spaces, its own key order)."""
    log = RoomLog()
    sent = log.message(ROOM, ALICE, "hi", txn_id="t-1")
    await ingest(engine, [*log.create_room(ROOM, ALICE), sent])
    (row,) = await query(
        engine, "SELECT client_json FROM events WHERE event_id = $1", event_id_of(sent)
    )
    old = orjson.loads(row[0])
    old["unsigned"] = {"age_ts": 1, "invite_room_state": []}

    async def put(conn: Conn) -> None:
        await conn.execute(
            "UPDATE events SET client_json = $2 WHERE event_id = $1",
            event_id_of(sent),
            orjson.dumps(old).decode(),
        )
        await conn.execute("DELETE FROM schema_version WHERE version = 21")

    await engine.write(put)
    assert 21 in await migrate(engine)
    served = await serve_all(engine)
    (_, mine, stored), *_ = [s for s in served if s[0] == event_id_of(sent)]
    assert '"unsigned"' not in stored
    assert mine["content"] == {"msgtype": "m.text", "body": "hi"}
    assert mine["unsigned"] == {
        "age": NOW - pdu_of(sent)["origin_server_ts"],
        "membership": "join",
        "transaction_id": "t-1",
    }
