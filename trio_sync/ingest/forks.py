"""The state at an event of a forked room history.

A ``new_room_event`` may carry ``state_before_adds_event_ids`` and
``state_before_removes_event_ids``: the state at (just before) the event is the room's
state after the message, plus the first, minus the second. Where that differs from the
room's state just before the event's position (the linear history), the difference is
stored in ``event_state_before`` (``sql/014_state_before.sql``) so the event is judged by
its own state: its ``prev_content``/``replaces_state``, history visibility,
``unsigned.membership`` and ``/context`` state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..storage import FOREVER, Array, Conn
from ..storage.rooms import RESET_EVENT_ID
from .bad_message import BadMessage
from .messages import NewRoomEvent, Pdu

Key = tuple[str, str]
#: (event ID, membership) of a state entry; event ID '' when the key has none.
Entry = tuple[str, str | None]
_NONE: Entry = (RESET_EVENT_ID, None)


def membership_of(etype: str, content: Mapping[str, Any]) -> str | None:
    """``content.membership`` of an ``m.room.member`` event (``leave`` if unusable)."""
    if etype != "m.room.member":
        return None
    value = content.get("membership")
    return value if isinstance(value, str) else "leave"


@dataclass(frozen=True, slots=True)
class StateBefore:
    """Where the state at an event differs from the linear state before its position."""

    overrides: dict[Key, Entry]

    async def store(self, conn: Conn, room_id: str, at: int) -> None:
        """Record the differences for the event at position ``at``."""
        if self.overrides:
            await conn.executemany(
                "INSERT INTO event_state_before (pos, room_id, type, state_key, event_id, "
                "membership) VALUES ($1, $2, $3, $4, $5, $6)",
                [(at, room_id, t, k, e, mem) for (t, k), (e, mem) in self.overrides.items()],
            )


async def _named(
    conn: Conn, ev: Pdu, ids: set[str], supplied: Mapping[str, Pdu]
) -> dict[str, tuple[str, str, str | None]]:
    """(type, state_key, membership) of each of ``ids`` that is known state of the room."""
    out: dict[str, tuple[str, str, str | None]] = {}
    for eid in ids:
        pdu = supplied.get(eid)
        if pdu is not None and pdu.state_key is not None and pdu.room_id == ev.room_id:
            out[eid] = (pdu.type, pdu.state_key, membership_of(pdu.type, pdu.content))
    wanted = [i for i in ids if i not in out]
    if wanted:
        for row in await conn.fetch(
            "SELECT event_id, type, state_key, client_json FROM events "
            "WHERE event_id = ANY($1) AND room_id = $2 AND state_key IS NOT NULL",
            Array(wanted),
            ev.room_id,
        ):
            content = orjson.loads(row[3]).get("content") or {}
            out[row[0]] = (row[1], row[2], membership_of(row[1], content))
    return out


async def state_before_event(
    conn: Conn,
    m: NewRoomEvent,
    adds: Mapping[str, tuple[str, str, str | None]],
    supplied: Mapping[str, Pdu],
) -> StateBefore | None:
    """The state at ``m``'s event as differences from the room's current state (read
    before the message is applied); None when the message says nothing of it (a linear
    history: the state before the event is the state before its position).

    Raises :class:`BadMessage` when a ``state_before_*`` ID is not known state of the room.
    """
    sba, sbr = m.state_before_adds_event_ids, m.state_before_removes_event_ids
    if not (sba or sbr):
        return None
    ev = m.event
    info = await _named(conn, ev, {*sba, *sbr, *m.removes_state_event_ids}, supplied)
    unknown = [i for i in (*sba, *sbr) if i not in info]
    if unknown:
        raise BadMessage(f"state_before_*_event_ids: not state of {ev.room_id}: {unknown[:5]}")
    info.update(adds)
    keys = {info[i][:2] for i in info}
    linear: dict[Key, Entry] = {}
    for row in await conn.fetch(
        "SELECT type, state_key, event_id, membership FROM room_state WHERE room_id = $1 "
        "AND removed_at = $2 AND event_id <> $3 AND type = ANY($4) AND state_key = ANY($5)",
        ev.room_id,
        FOREVER,
        RESET_EVENT_ID,
        Array(sorted({t for t, _ in keys})),
        Array(sorted({k for _, k in keys})),
    ):
        if (row[0], row[1]) in keys:
            linear[(row[0], row[1])] = (row[2], row[3])
    # The state after the message, then the state at the event.
    after = {} if m.rewrites_state else dict(linear)
    for eid in m.removes_state_event_ids:
        if eid in info and after.get(info[eid][:2], _NONE)[0] == eid:
            del after[info[eid][:2]]
    for eid, (etype, state_key, membership) in adds.items():
        after[(etype, state_key)] = (eid, membership)
    before = dict(after)
    for eid in sbr:
        if before.get(info[eid][:2], _NONE)[0] == eid:
            del before[info[eid][:2]]
    for eid in sba:
        before[info[eid][:2]] = (eid, info[eid][2])
    if ev.state_key is not None:
        own = (ev.type, ev.state_key)
        if before.get(own, _NONE)[0] == ev.event_id:  # never part of its own state
            before[own] = linear.get(own, _NONE)
    overrides = {
        key: before.get(key, _NONE)
        for key in keys
        if before.get(key, _NONE) != linear.get(key, _NONE)
    }
    return StateBefore(overrides)
