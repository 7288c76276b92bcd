"""The room's state at one event of its history, forked histories included.

For an event of the linear history at position ``p`` that is the state after it, as
:func:`.rooms.state_at` gives it (``added_at <= p < removed_at``). An event of a forked
history has its own state (``event_state_before``, ``sql/014_state_before.sql``): the state
before it is the state before its position with those rows in force instead, and the
state after it is that plus the event itself when it is a state event. A backfilled event
is judged at its anchor (:mod:`.history`); its own state is not known, so it gets the
state at that position and never the anchor's fork rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from .engine import Conn, Row
from .history import HistoryEvent
from .rooms import MEMBER, StateEvent, json_column, state_at


async def state_at_event(
    conn: Conn,
    room_id: str,
    h: HistoryEvent,
    fmt: str = "client",
    *,
    types: Sequence[str] | None = None,
    members: Sequence[str] | None = None,
) -> list[StateEvent]:
    """The state of ``room_id`` after the event ``h`` (see the module docstring);
    ``types`` limits the entries to those event types, ``members`` the ``m.room.member``
    entries to those users. Two statements: the
    event's fork rows, then the state. Read-only."""
    ev = h.event
    rows: Sequence[Row] = []
    if not h.backfilled:
        rows = await conn.fetch(
            f"SELECT b.type, b.state_key, e.event_id, e.sender, e.{json_column(fmt)} "
            "FROM event_state_before b LEFT JOIN events e ON e.event_id = b.event_id "
            "WHERE b.pos = $1 AND b.room_id = $2",
            ev.pos,
            room_id,
        )
    if not rows:
        return await state_at(conn, room_id, ev.pos, fmt, types=types, members=members)

    def wanted(etype: str, state_key: str) -> bool:
        if types is not None and etype not in types:
            return False
        return members is None or etype != MEMBER or state_key in members

    state = {
        (s.type, s.state_key): s
        for s in await state_at(conn, room_id, ev.pos - 1, fmt, types=types, members=members)
    }
    for r in rows:
        key = (str(r[0]), str(r[1]))
        state.pop(key, None)
        if r[2] is not None and wanted(*key):
            state[key] = StateEvent(r[2], key[0], key[1], r[3], r[4])
    if ev.state_key is not None and wanted(ev.type, ev.state_key):
        state[(ev.type, ev.state_key)] = StateEvent(
            ev.event_id, ev.type, ev.state_key, ev.sender, ev.json
        )
    return list(state.values())
