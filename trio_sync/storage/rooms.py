"""Read queries over rooms: timelines, state at a position, memberships.

Positions are PDU stream positions. "State at P" is the room's state after the event at
P was applied: rows with ``added_at <= P < removed_at``. Every query here costs what it
returns (plus an index descent), never the length of the room's history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from .engine import FOREVER, Array, Conn, Row
from .relations import BUNDLED

MEMBER = "m.room.member"
_new = tuple.__new__
#: The ``event_id`` of a ``room_state`` row that records a state reset: a membership the
#: room server dropped from the state without replacing it. The row is a ``leave``
#: interval for membership queries; it joins no event, so it is never served as state.
RESET_EVENT_ID = ""
#: The state types a client is shown for a room it is invited to or knocking on.
STRIPPED_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
)


@dataclass(frozen=True, slots=True)
class Membership:
    room_id: str
    membership: str
    event_id: str
    #: The PDU position from which this membership holds.
    since: int


class TimelineEvent(NamedTuple):
    """A stored room event with what serving it needs (``json`` in client format, or in
    federation format when read with ``fmt="federation"``).

    A tuple, built straight from a row slice: timelines make one per event read, and a
    tuple costs a tenth of a dataclass to build."""

    pos: int
    depth: int
    event_id: str
    type: str
    state_key: str | None
    sender: str
    origin_server_ts: int
    txn_session: int | None
    txn_id: str | None
    json: str


#: The ``events`` columns behind :class:`TimelineEvent`, less the JSON one.
_EVENT_COLUMNS = (
    "pos, depth, event_id, type, state_key, sender, origin_server_ts, txn_session, txn_id"
)


def json_column(fmt: str) -> str:
    """The ``events`` column holding events in ``fmt`` (``client`` or ``federation``)."""
    return "pdu_json" if fmt == "federation" else "client_json"


def _timeline_event(r: Row, at: int = 0) -> TimelineEvent:
    return _new(TimelineEvent, r[at : at + 10])


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
    conn: Conn, room_ids: Sequence[str], after: int, upto: int, fmt: str = "client"
) -> dict[str, list[TimelineEvent]]:
    """Every syncable event of ``room_ids`` at ``after < p <= upto``, by room, oldest first.

    One scan of the range: use it when the range is short.
    """
    rows = await conn.fetch(
        f"SELECT room_id, {_EVENT_COLUMNS}, {json_column(fmt)} FROM events WHERE pos > $1 "
        "AND pos <= $2 AND exclude_from_sync = 0 AND room_id = ANY($3) ORDER BY pos",
        after,
        upto,
        Array(list(room_ids)),
    )
    out: dict[str, list[TimelineEvent]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(_timeline_event(r, 1))
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
    conn: Conn, room_id: str, after: int, upto: int, limit: int, fmt: str = "client"
) -> list[TimelineEvent]:
    """Up to ``limit`` newest syncable events at ``after < p <= upto``, oldest first."""
    return list(reversed(await events_page(conn, room_id, after, upto + 1, limit, fmt)))


async def events_page(
    conn: Conn,
    room_id: str,
    after: int,
    before: int,
    limit: int,
    fmt: str = "client",
    *,
    newest_first: bool = True,
) -> list[TimelineEvent]:
    """Up to ``limit`` syncable events at ``after < p < before``: the newest of them,
    newest first, or (``newest_first=False``) the oldest, oldest first."""
    order = "DESC" if newest_first else "ASC"
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS}, {json_column(fmt)} FROM events WHERE room_id = $1 "
        f"AND pos > $2 AND pos < $3 AND exclude_from_sync = 0 ORDER BY pos {order} LIMIT $4",
        room_id,
        after,
        before,
        limit,
    )
    return [_timeline_event(r) for r in rows]


def _newest_pages_sql(dialect: str, fmt: str, children: str = "") -> str:
    """The query of :func:`newest_pages` (``$1`` rooms, ``$2`` after, ``$3`` upto, ``$4``
    limit), each row ``room_id, *TimelineEvent`` and then ``children`` if given (an
    expression over the event ``e``)."""
    cols = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
    extra = f", {children}" if children else ""
    if dialect == "postgres":
        return (
            f"SELECT r.room_id, {cols}, e.{json_column(fmt)}{extra} "
            "FROM unnest($1::text[]) AS r(room_id) "
            "CROSS JOIN LATERAL (SELECT * FROM events WHERE room_id = r.room_id AND pos > $2 "
            "AND pos <= $3 AND exclude_from_sync = 0 ORDER BY pos DESC LIMIT $4) AS e"
        )
    return (
        f"SELECT r.value, {cols}, e.{json_column(fmt)}{extra} FROM json_each($1) AS r "
        "JOIN events e ON e.room_id = r.value AND e.pos <= $3 AND e.pos > COALESCE(("
        "SELECT x.pos FROM events x WHERE x.room_id = r.value AND x.pos > $2 "
        "AND x.pos <= $3 AND x.exclude_from_sync = 0 ORDER BY x.pos DESC "
        "LIMIT 1 OFFSET $4 - 1) - 1, $2) "
        "WHERE e.exclude_from_sync = 0"
    )


def _pages(room_ids: Sequence[str], rows: Sequence[Row]) -> dict[str, list[TimelineEvent]]:
    out: dict[str, list[TimelineEvent]] = {r: [] for r in room_ids}
    for r in rows:
        out[r[0]].append(_timeline_event(r, 1))
    for events in out.values():
        # By position alone (positions are unique): a few events per room here cost less
        # than the server sorting every room's rows, JSON and all, in one sort.
        events.sort(reverse=True)
    return out


async def newest_pages(
    conn: Conn, room_ids: Sequence[str], after: int, upto: int, limit: int, fmt: str = "client"
) -> dict[str, list[TimelineEvent]]:
    """For every room of ``room_ids``, what :func:`events_page` (``after``, ``upto + 1``,
    ``limit``) returns: its newest ``limit`` syncable events at ``after < p <= upto``,
    newest first. One statement for all rooms, each room costing an index descent and
    the rows it returns (PostgreSQL: ``LATERAL``; SQLite: the range's lower bound found
    per room by a correlated subquery)."""
    if not room_ids:
        return {}
    sql = _newest_pages_sql(conn.dialect, fmt)
    rows = await conn.fetch(sql, Array(list(room_ids)), after, upto, limit)
    return _pages(room_ids, rows)


async def newest_pages_with_parents(
    conn: Conn,
    room_ids: Sequence[str],
    after: int,
    upto: int,
    limit: int,
    fmt: str,
    children_upto: int,
) -> tuple[dict[str, list[TimelineEvent]], set[str]]:
    """:func:`newest_pages`, and which of their events have a child of a bundled relation
    type at ``p <= children_upto`` (an index probe per event, in the same statement)."""
    if not room_ids:
        return {}, set()
    bundled = ", ".join(f"'{t}'" for t in BUNDLED)
    has_children = (
        "EXISTS (SELECT 1 FROM relations c WHERE c.room_id = e.room_id "
        f"AND c.parent_id = e.event_id AND c.rel_type IN ({bundled}) AND c.pos <= $5)"
    )
    sql = _newest_pages_sql(conn.dialect, fmt, has_children)
    rows = await conn.fetch(sql, Array(list(room_ids)), after, upto, limit, children_upto)
    # A row: room ID, the ten TimelineEvent columns (event ID third), the flag.
    return _pages(room_ids, rows), {str(r[3]) for r in rows if r[11]}


async def event_by_id(
    conn: Conn, event_id: str, fmt: str = "client", *, outliers: bool = False
) -> tuple[str, TimelineEvent] | None:
    """The room and stored form of ``event_id``, if it is stored and servable (or, with
    ``outliers``, stored at all)."""
    servable = "" if outliers else " AND exclude_from_sync = 0"
    row = await conn.fetchrow(
        f"SELECT room_id, {_EVENT_COLUMNS}, {json_column(fmt)} FROM events "
        f"WHERE event_id = $1{servable}",
        event_id,
    )
    return None if row is None else (str(row[0]), _timeline_event(row, 1))


class StateEvent(NamedTuple):
    """One entry of a room's state: its key, sender and stored JSON.

    A tuple, as :class:`TimelineEvent` is: a complete sync makes one per state event of
    every room, and a tuple is a third of a frozen dataclass to build."""

    event_id: str
    type: str
    state_key: str
    sender: str
    json: str


def _state_rows(rows: Sequence[Row]) -> list[StateEvent]:
    return [StateEvent(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def state_at(
    conn: Conn,
    room_id: str,
    at: int,
    fmt: str = "client",
    *,
    types: Sequence[str] | None = None,
    members: Sequence[str] | None = None,
) -> list[StateEvent]:
    """The room's state as of position ``at`` (``added_at <= at < removed_at``).

    ``members`` limits ``m.room.member`` entries to those users (lazy loading); ``types``
    limits the entries to those event types.
    """
    where, args = _state_limits(types, members, first=3)
    rows = await conn.fetch(
        f"SELECT e.event_id, s.type, s.state_key, e.sender, e.{json_column(fmt)} "
        "FROM room_state s JOIN events e ON e.event_id = s.event_id "
        f"WHERE s.room_id = $1 AND s.added_at <= $2 AND s.removed_at > $2{where} "
        "ORDER BY s.added_at, s.type, s.state_key",
        room_id,
        at,
        *args,
    )
    return _state_rows(rows)


#: Between the room ID and the user ID of a pair's text in :func:`states_at` (``chr(31)``
#: in SQL): a pair's text is only ever compared with a row's own room and state key, so
#: even a collision could bring in nothing but a member event of the room's own state.
_PAIR = "\x1f"


async def states_at(
    conn: Conn,
    points: dict[str, int],
    fmt: str = "client",
    *,
    members: Mapping[str, Iterable[str]] | None = None,
    members_only: bool = False,
) -> dict[str, list[StateEvent]]:
    """For every room of ``points``, what :func:`state_at` (room, ``points[room]``,
    ``members=members[room]``) returns, in one statement: with ``members`` (every room of
    ``points`` in it), a room's ``m.room.member`` entries are those of its users there
    (lazy loading), and with ``members_only`` too, there are no other entries."""
    if not points:
        return {}
    select = f"SELECT s.room_id, e.event_id, s.type, s.state_key, e.sender, e.{json_column(fmt)} "
    join = (
        "JOIN room_state s ON s.room_id = r.room_id AND s.added_at <= r.at "
        "AND s.removed_at > r.at JOIN events e ON e.event_id = s.event_id"
    )
    order = " ORDER BY s.room_id, s.added_at, s.type, s.state_key"
    args: list[object]
    if conn.dialect == "postgres":
        source = "FROM unnest($1::text[], $2::bigint[]) AS r(room_id, at) "
        args = [Array(list(points)), Array(list(points.values()))]
        pair = "s.room_id || chr(31) || s.state_key IN (SELECT unnest($3::text[]))"
    else:
        source = (
            "FROM (SELECT json_extract(value, '$[0]') AS room_id, "
            "json_extract(value, '$[1]') AS at FROM json_each($1)) AS r "
        )
        args = [orjson.dumps([[room_id, at] for room_id, at in points.items()]).decode()]
        pair = "s.room_id || char(31) || s.state_key IN (SELECT value FROM json_each($2))"
    where = ""
    if members is not None:
        # A hashed lookup of the (room, user) pairs, on both backends.
        if members_only:
            where = f" WHERE s.type = '{MEMBER}' AND {pair}"
        else:
            where = f" WHERE (s.type <> '{MEMBER}' OR {pair})"
        args.append(
            Array([f"{room_id}{_PAIR}{user}" for room_id in points for user in members[room_id]])
        )
    rows = await conn.fetch(select + source + join + where + order, *args)
    out: dict[str, list[StateEvent]] = {r: [] for r in points}
    for r in rows:
        out[r[0]].append(StateEvent(r[1], r[2], r[3], r[4], r[5]))
    return out


def _state_limits(
    types: Sequence[str] | None, members: Sequence[str] | None, first: int
) -> tuple[str, list[object]]:
    where = ""
    args: list[object] = []
    if types is not None:
        where += f" AND s.type = ANY(${first})"
        args.append(Array(list(types)))
        first += 1
    if members is not None:
        where += f" AND (s.type <> '{MEMBER}' OR s.state_key = ANY(${first}))"
        args.append(Array(list(members)))
    return where, args


async def state_delta(
    conn: Conn,
    room_id: str,
    after: int,
    at: int,
    fmt: str = "client",
    *,
    members: Sequence[str] | None = None,
) -> list[StateEvent]:
    """State as of ``at`` that became state at ``after < p <= at``."""
    where, args = _state_limits(None, members, first=4)
    rows = await conn.fetch(
        f"SELECT e.event_id, s.type, s.state_key, e.sender, e.{json_column(fmt)} "
        "FROM room_state s JOIN events e ON e.event_id = s.event_id "
        "WHERE s.room_id = $1 AND s.added_at > $2 AND s.added_at <= $3 "
        f"AND s.removed_at > $3{where} ORDER BY s.added_at, s.type, s.state_key",
        room_id,
        after,
        at,
        *args,
    )
    return _state_rows(rows)


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


@dataclass(slots=True)
class StateChanges:
    """Every state change of some rooms at ``after < p <= upto``, read in one query, to
    answer :func:`state_delta` for any of them from ``after`` to any ``at <= upto``."""

    after: int
    upto: int
    #: room → (added_at, removed_at, entry), by added_at, type, state_key.
    rows: dict[str, list[tuple[int, int, StateEvent]]]

    def delta(
        self, room_id: str, at: int, members: Sequence[str] | None = None
    ) -> list[StateEvent]:
        """What :func:`state_delta` (``self.after``, ``at``) returns (``at <= upto``)."""
        wanted = None if members is None else set(members)
        return [
            s
            for added, removed, s in self.rows.get(room_id, ())
            if added <= at < removed
            and (wanted is None or s.type != MEMBER or s.state_key in wanted)
        ]

    def members_changed(self, room_id: str) -> bool:
        return any(s.type == MEMBER for _, _, s in self.rows.get(room_id, ()))


async def state_changes(
    conn: Conn, room_ids: Sequence[str], after: int, upto: int, fmt: str = "client"
) -> StateChanges:
    """The state changes of ``room_ids`` at ``after < p <= upto`` (one query)."""
    rows = await conn.fetch(
        f"SELECT s.room_id, s.added_at, s.removed_at, e.event_id, s.type, s.state_key, "
        f"e.sender, e.{json_column(fmt)} FROM room_state s "
        "JOIN events e ON e.event_id = s.event_id WHERE s.room_id = ANY($1) "
        "AND s.added_at > $2 AND s.added_at <= $3 ORDER BY s.added_at, s.type, s.state_key",
        Array(list(room_ids)),
        after,
        upto,
    )
    out: dict[str, list[tuple[int, int, StateEvent]]] = {}
    for r in rows:
        entry = StateEvent(r[3], r[4], r[5], r[6], r[7])
        removed = FOREVER if r[2] > upto else int(r[2])
        out.setdefault(r[0], []).append((int(r[1]), removed, entry))
    return StateChanges(after, upto, out)


@dataclass(frozen=True, slots=True)
class Summary:
    """``m.heroes``, ``m.joined_member_count`` and ``m.invited_member_count`` of a room."""

    heroes: list[str]
    joined: int
    invited: int

    def to_json(self) -> dict[str, object]:
        return {
            "m.heroes": self.heroes,
            "m.joined_member_count": self.joined,
            "m.invited_member_count": self.invited,
        }


_HERO_ORDER = "CASE WHEN membership IN ('join', 'invite') THEN 0 ELSE 1 END, added_at"


async def room_summaries(
    conn: Conn, room_ids: Sequence[str], at: int, user_id: str
) -> dict[str, Summary]:
    """The summary of each of ``room_ids`` as of ``at``, in one query: member counts, and
    as heroes the first five other joined or invited members by the position of their
    membership (or, when there are none, the first five other users who left)."""
    if not room_ids:
        return {}
    rows = await conn.fetch(
        "SELECT room_id, 0, membership, membership, COUNT(*) FROM room_state "
        "WHERE room_id = ANY($1) AND type = $2 AND added_at <= $3 AND removed_at > $3 "
        "GROUP BY room_id, membership "
        "UNION ALL SELECT room_id, 1, state_key, membership, n FROM ("
        "SELECT room_id, state_key, membership, "
        f"ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY {_HERO_ORDER}) AS n "
        "FROM room_state WHERE room_id = ANY($1) AND type = $2 AND added_at <= $3 "
        "AND removed_at > $3 AND state_key <> $4 "
        "AND membership IN ('join', 'invite', 'leave', 'ban')) AS ranked WHERE n <= 5",
        Array(list(room_ids)),
        MEMBER,
        at,
        user_id,
    )
    counts: dict[str, dict[str, int]] = {r: {} for r in room_ids}
    heroes: dict[str, list[tuple[int, str, str]]] = {r: [] for r in room_ids}
    for r in rows:
        if r[1] == 0:
            counts[r[0]][str(r[2])] = int(r[4])
        else:
            heroes[r[0]].append((int(r[4]), str(r[2]), str(r[3])))
    out = {}
    for room_id in room_ids:
        ranked = [(user, m) for _, user, m in sorted(heroes[room_id])]
        active = [user for user, m in ranked if m in ("join", "invite")]
        out[room_id] = Summary(
            active or [user for user, _ in ranked],
            counts[room_id].get("join", 0),
            counts[room_id].get("invite", 0),
        )
    return out


async def room_summary(conn: Conn, room_id: str, at: int, user_id: str) -> Summary:
    """The summary of one room as of ``at`` (see :func:`room_summaries`)."""
    return (await room_summaries(conn, [room_id], at, user_id))[room_id]


async def events_by_ids(
    conn: Conn, room_id: str, event_ids: Sequence[str], fmt: str = "client"
) -> dict[str, TimelineEvent]:
    """The stored events of ``room_id`` among ``event_ids`` (one query), by event ID."""
    if not event_ids:
        return {}
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS}, {json_column(fmt)} FROM events "
        "WHERE event_id = ANY($1) AND room_id = $2",
        Array(list(event_ids)),
        room_id,
    )
    return {r[2]: _timeline_event(r) for r in rows}
