"""A room's history in the order ``/messages`` and ``/context`` walk it.

Every event of a room's history has a key ``(anchor, sub, pos)`` (``sql/006_topology.sql``):
stream events ``(pos, STREAM_SUB, pos)``, so they keep the stream order ``/sync`` uses;
backfilled events ``(anchor, depth, pos)``, just before the stream event they precede
(``anchor``), among themselves in topological order. A :class:`Place` is such a key used
as a boundary: walking backwards from it gives keys below it, forwards keys at or above it.

A backfilled event is judged (history visibility, ``unsigned.membership``) as an event at
its anchor would be: the state it had is not known, the state before the stream event it
precedes is the nearest known. :class:`HistoryEvent` carries that position as ``judged``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tokens import TopologyToken
from .engine import FOREVER, Conn, Row
from .rooms import TimelineEvent, json_column

#: ``topo_sub`` of stream events: above every depth.
STREAM_SUB = 1 << 62
_LOWEST = -(1 << 62)


@dataclass(frozen=True, slots=True, order=True)
class Place:
    """A boundary in a room's history order: just before the key ``(anchor, sub, pos)``."""

    anchor: int
    sub: int
    pos: int

    @classmethod
    def before_stream(cls, p: int) -> Place:
        """Just before stream position ``p``: after every event backfilled before it."""
        return cls(p, STREAM_SUB, 0)

    @classmethod
    def start_of(cls, p: int) -> Place:
        """Just before everything judged at stream position ``p`` (backfill included)."""
        return cls(p, _LOWEST, 0)

    def after(self) -> Place:
        """The boundary just after the event whose key this is."""
        return Place(self.anchor, self.sub, self.pos + 1)


#: After everything.
END = Place(FOREVER, 0, 0)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """A stored event of a room's history and where it sits."""

    place: Place
    #: The event; its ``pos`` is where it is judged (its anchor, for backfilled events).
    event: TimelineEvent
    #: Its own depth (for the token naming it).
    depth: int

    @property
    def backfilled(self) -> bool:
        return self.place.sub != STREAM_SUB

    def token(self) -> str:
        """The token of the place just before this event."""
        return str(TopologyToken(self.depth, self.place.pos))


_COLUMNS = (
    "topo_anchor, topo_sub, pos, depth, event_id, type, state_key, sender, origin_server_ts, "
    "txn_session, txn_id"
)


def _history_event(r: Row, at: int = 0) -> HistoryEvent:
    place = Place(int(r[at]), int(r[at + 1]), int(r[at + 2]))
    judged = place.pos if place.sub == STREAM_SUB else place.anchor
    ev = TimelineEvent(judged, *r[at + 3 : at + 12])
    return HistoryEvent(place, ev, int(r[at + 3]))


async def place_of(conn: Conn, room_id: str, token: TopologyToken) -> Place:
    """The place a pagination token names: just before the backfilled event it names, else
    just before stream position ``token.pdu``."""
    row = await conn.fetchrow(
        "SELECT topo_anchor, topo_sub FROM events WHERE pos = $1 AND room_id = $2 "
        "AND topo_anchor IS NOT NULL AND topo_sub <> $3",
        token.pdu,
        room_id,
        STREAM_SUB,
    )
    if row is None:
        return Place.before_stream(token.pdu)
    return Place(int(row[0]), int(row[1]), token.pdu)


async def history_page(
    conn: Conn,
    room_id: str,
    low: Place,
    high: Place,
    upto: int,
    limit: int,
    fmt: str = "client",
    *,
    newest_first: bool = True,
) -> list[HistoryEvent]:
    """Up to ``limit`` events of the room's history with ``low <= key < high`` stored at
    positions ``<= upto``: the latest of them in history order, latest first, or
    (``newest_first=False``) the first, first first."""
    order = "DESC" if newest_first else "ASC"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, {json_column(fmt)} FROM events WHERE room_id = $1 "
        "AND topo_anchor IS NOT NULL AND pos <= $8 "
        "AND (topo_anchor, topo_sub, pos) >= ($2, $3, $4) "
        "AND (topo_anchor, topo_sub, pos) < ($5, $6, $7) "
        f"ORDER BY topo_anchor {order}, topo_sub {order}, pos {order} LIMIT $9",
        room_id,
        low.anchor,
        low.sub,
        low.pos,
        high.anchor,
        high.sub,
        high.pos,
        upto,
        limit,
    )
    return [_history_event(r) for r in rows]


async def history_event(
    conn: Conn, event_id: str, upto: int, fmt: str = "client"
) -> tuple[str, HistoryEvent] | None:
    """The room of ``event_id`` and the event, if it is part of a room's history stored
    at a position ``<= upto``."""
    row = await conn.fetchrow(
        f"SELECT room_id, {_COLUMNS}, {json_column(fmt)} FROM events WHERE event_id = $1 "
        "AND topo_anchor IS NOT NULL AND pos <= $2",
        event_id,
        upto,
    )
    return None if row is None else (str(row[0]), _history_event(row, 1))


async def backfill_anchor(conn: Conn, room_id: str, depth: int) -> int | None:
    """Where a backfilled event of ``depth`` goes: with the first event of the room's
    history deeper than it — before the first such stream event, or with the earliest
    such backfilled one (None: there is none)."""
    value = await conn.fetchval(
        "SELECT MIN(topo_anchor) FROM events WHERE room_id = $1 AND depth > $2 "
        "AND topo_anchor IS NOT NULL",
        room_id,
        depth,
    )
    return None if value is None else int(value)
