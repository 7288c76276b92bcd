"""Read queries over rooms: timelines, state at a position, memberships.

Positions are PDU stream positions. "State at P" is the room's state after the event at
P was applied: rows with ``added_at <= P < removed_at``. Every query here costs what it
returns (plus an index descent), never the length of the room's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .engine import FOREVER, Array, Conn

MEMBER = "m.room.member"


@dataclass(frozen=True, slots=True)
class Membership:
    room_id: str
    membership: str
    event_id: str
    #: The PDU position from which this membership holds.
    since: int


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    pos: int
    depth: int
    event_id: str
    json: str


async def memberships_at(conn: Conn, user_id: str, at: int) -> dict[str, Membership]:
    """The user's membership in every room it has one in, as of position ``at``."""
    rows = await conn.fetch(
        "SELECT room_id, membership, event_id, added_at FROM room_state "
        "WHERE state_key = $1 AND type = $2 AND added_at <= $3 AND removed_at > $3",
        user_id,
        MEMBER,
        at,
    )
    return {r[0]: Membership(r[0], r[1], r[2], r[3]) for r in rows}


async def memberships_now_and_since(
    conn: Conn, user_id: str, after: int, upto: int
) -> tuple[dict[str, Membership], list[Membership]]:
    """In one query: the user's memberships as of ``upto``, and its membership changes at
    ``after < p <= upto`` (oldest first)."""
    rows = await conn.fetch(
        "SELECT room_id, membership, event_id, added_at, removed_at FROM room_state "
        "WHERE state_key = $1 AND type = $2 AND added_at <= $4 "
        "AND (removed_at > $4 OR added_at > $3) ORDER BY added_at",
        user_id,
        MEMBER,
        after,
        upto,
    )
    current: dict[str, Membership] = {}
    changes: list[Membership] = []
    for r in rows:
        m = Membership(r[0], r[1], r[2], r[3])
        if r[4] > upto:
            current[m.room_id] = m
        if m.since > after:
            changes.append(m)
    return current, changes


async def events_in_range(
    conn: Conn, room_ids: Sequence[str], after: int, upto: int
) -> dict[str, list[TimelineEvent]]:
    """Every syncable event of ``room_ids`` at ``after < p <= upto``, by room, oldest first.

    One scan of the range: use it when the range is short.
    """
    rows = await conn.fetch(
        "SELECT room_id, pos, depth, event_id, client_json FROM events WHERE pos > $1 "
        "AND pos <= $2 AND exclude_from_sync = 0 AND room_id = ANY($3) ORDER BY pos",
        after,
        upto,
        Array(list(room_ids)),
    )
    out: dict[str, list[TimelineEvent]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(TimelineEvent(r[1], r[2], r[3], r[4]))
    return out


async def rooms_with_events(conn: Conn, room_ids: Sequence[str], after: int, upto: int) -> set[str]:
    """Which of ``room_ids`` have a syncable event at ``after < p <= upto``.

    Scans the events in the range once: use it when the range is short.
    """
    rows = await conn.fetch(
        "SELECT DISTINCT room_id FROM events WHERE pos > $1 AND pos <= $2 "
        "AND exclude_from_sync = 0 AND room_id = ANY($3)",
        after,
        upto,
        Array(list(room_ids)),
    )
    return {r[0] for r in rows}


async def recent_events(
    conn: Conn, room_id: str, after: int, upto: int, limit: int
) -> list[TimelineEvent]:
    """Up to ``limit`` newest syncable events at ``after < p <= upto``, oldest first."""
    rows = await conn.fetch(
        "SELECT pos, depth, event_id, client_json FROM events WHERE room_id = $1 "
        "AND pos > $2 AND pos <= $3 AND exclude_from_sync = 0 ORDER BY pos DESC LIMIT $4",
        room_id,
        after,
        upto,
        limit,
    )
    return [TimelineEvent(r[0], r[1], r[2], r[3]) for r in reversed(rows)]


async def state_at(conn: Conn, room_id: str, at: int) -> list[tuple[str, str]]:
    """The room's whole state as of position ``at``: ``(event_id, client_json)`` pairs."""
    rows = await conn.fetch(
        "SELECT e.event_id, e.client_json FROM room_state s "
        "JOIN events e ON e.event_id = s.event_id "
        "WHERE s.room_id = $1 AND s.added_at <= $2 AND s.removed_at > $2 "
        "ORDER BY s.added_at, s.type, s.state_key",
        room_id,
        at,
    )
    return [(r[0], r[1]) for r in rows]


async def state_delta(conn: Conn, room_id: str, after: int, at: int) -> list[tuple[str, str]]:
    """State as of ``at`` that became state at ``after < p <= at``."""
    rows = await conn.fetch(
        "SELECT e.event_id, e.client_json FROM room_state s "
        "JOIN events e ON e.event_id = s.event_id "
        "WHERE s.room_id = $1 AND s.added_at > $2 AND s.added_at <= $3 AND s.removed_at > $3 "
        "ORDER BY s.added_at, s.type, s.state_key",
        room_id,
        after,
        at,
    )
    return [(r[0], r[1]) for r in rows]


async def joined_rooms_map(conn: Conn) -> dict[str, set[str]]:
    """Every room's currently joined users (loaded once at start for the notifier)."""
    rows = await conn.fetch(
        "SELECT room_id, state_key FROM room_state WHERE type = $1 AND membership = 'join' "
        "AND removed_at = $2",
        MEMBER,
        FOREVER,
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r[0], set()).add(r[1])
    return out
