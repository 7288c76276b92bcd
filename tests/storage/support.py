"""Helpers shared by the storage tests: building log messages, ingesting, querying."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from trio_sync.ingest import Applied, apply_batch
from trio_sync.ingest.runner import parse_items
from trio_sync.roomlog import ROOM_VERSION, RoomLog
from trio_sync.storage import Conn, Engine
from trio_sync.storage.rooms import state_at

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
CAROL = "@carol:example.org"
ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"

Message = dict[str, Any]


# --- building log messages ------------------------------------------------------------


def pdu_of(message: Message) -> dict[str, Any]:
    """The event (HeaderedEvent) carried by a ``new_room_event`` message."""
    event: dict[str, Any] = message["new_room_event"]["event"]
    return event


def event_id_of(message: Message) -> str:
    return str(pdu_of(message)["_event_id"])


def with_body(message: Message, **fields: Any) -> Message:
    """A copy of a ``new_room_event`` message with body fields replaced."""
    body = {**message["new_room_event"], **fields}
    return {"type": "new_room_event", "new_room_event": body}


def old_room_event(pdu: dict[str, Any]) -> Message:
    return {"type": "old_room_event", "old_room_event": {"event": pdu}}


def new_invite_event(pdu: dict[str, Any], room_version: str = ROOM_VERSION) -> Message:
    body = {"event": pdu, "room_version": room_version}
    return {"type": "new_invite_event", "new_invite_event": body}


def retire_invite_event(
    event_id: str, membership: str = "leave", retired_by: str | None = None
) -> Message:
    body: dict[str, Any] = {"EventID": event_id, "Membership": membership}
    if retired_by is not None:
        body["RetiredByEventID"] = retired_by
    return {"type": "retire_invite_event", "retire_invite_event": body}


def redaction(log: RoomLog, room_id: str, sender: str, target: str) -> Message:
    """The ``new_room_event`` of an ``m.room.redaction`` of ``target``."""
    message = log.event(room_id, sender, "m.room.redaction", {"reason": "spam"})
    pdu_of(message)["redacts"] = target
    return message


def redacted_event(target: str, because: dict[str, Any]) -> Message:
    return {
        "type": "redacted_event",
        "redacted_event": {"RedactedEventID": target, "RedactedBecause": because},
    }


def purge_room(room_id: str) -> Message:
    return {"type": "purge_room", "purge_room": {"RoomID": room_id}}


# --- ingesting ------------------------------------------------------------------------


def raw_of(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else orjson.dumps(message)


async def ingest(
    engine: Engine,
    messages: Sequence[Message | bytes],
    *,
    source: str = "test",
    offsets: Sequence[int | None] | None = None,
    end_offset: int | None = None,
) -> Applied:
    """Apply ``messages`` as one batch (one write transaction), as the ingest task does."""
    raws = [raw_of(m) for m in messages]
    items = parse_items(raws, offsets if offsets is not None else [None] * len(raws))
    return await engine.write(apply_batch, source, items, end_offset)


# --- querying -------------------------------------------------------------------------


async def _fetch(conn: Conn, sql: str, *args: object) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.fetch(sql, *args)]  # type: ignore[arg-type]


async def query(engine: Engine, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """All rows of a read query, as plain tuples."""
    return await engine.read(_fetch, sql, *args)


async def stored_events(engine: Engine) -> list[tuple[int, str]]:
    """``(pos, event_id)`` of every stored event, in position order."""
    rows = await query(engine, "SELECT pos, event_id FROM events ORDER BY pos")
    return [(int(pos), event_id) for pos, event_id in rows]


async def client_event(engine: Engine, event_id: str) -> dict[str, Any]:
    """A stored event as clients receive it."""
    rows = await query(engine, "SELECT client_json FROM events WHERE event_id = $1", event_id)
    assert len(rows) == 1, f"{event_id} stored {len(rows)} times"
    event: dict[str, Any] = orjson.loads(rows[0][0])
    return event


async def stream_position(engine: Engine, stream: str) -> int:
    rows = await query(engine, "SELECT position FROM streams WHERE stream = $1", stream)
    return int(rows[0][0])


async def rejects(engine: Engine) -> list[tuple[int, str, int | None, str, bytes]]:
    """``(id, source, offset, reason, raw)`` of every recorded reject, oldest first."""
    rows = await query(
        engine, "SELECT id, source, position, reason, raw FROM ingest_rejects ORDER BY id"
    )
    return [(int(i), s, None if p is None else int(p), r, bytes(raw)) for i, s, p, r, raw in rows]


async def state_ids(engine: Engine, room_id: str, at: int) -> set[str]:
    """Event IDs of the room's state as of position ``at``."""
    return {s.event_id for s in await engine.read(state_at, room_id, at)}


async def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything ingest writes about rooms, to compare before and after a message."""
    out = {
        table: sorted(await query(engine, f"SELECT * FROM {table}"), key=repr)
        for table in ("events", "room_state", "invites")
    }
    out["streams"] = sorted(
        await query(engine, "SELECT stream, position FROM streams WHERE stream <> 'reject'")
    )
    return out
