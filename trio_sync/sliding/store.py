"""Connection state in the database: what each sliding sync connection has been sent.

A connection is ``(user, device, conn_id)``. Every response that changes what the client
has is recorded as a new position (``pos``), with the stream token it was built at, the
room subscriptions in force, the lists' counts and windows, and one row per room it sent
(``sliding_rooms``, versioned by position). A request names the position it builds on;
what the client has is then, per room, the newest row at or before that position. Using
a position acknowledges it: the connection's other positions, and room rows written after
it, are dropped when the next one is recorded. Everything is in the database, so a
restart keeps every position valid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..storage import Array, Conn
from ..tokens import StreamToken
from .request import RequiredState, RoomConfig, unknown_pos
from .required_state import MAX_REMEMBERED

#: A position unused for this long is forgotten: the client must start over.
POSITION_TTL_MS = 7 * 24 * 3600 * 1000
#: Superseded room rows are deleted when the acknowledged position is a multiple of this.
COMPACT_EVERY = 16
#: The most expired positions one new connection clears away.
EXPIRE_BATCH = 100


@dataclass(frozen=True, slots=True)
class SentRoom:
    """What a connection has of one room."""

    #: The PDU position the room's timeline and state were sent up to.
    sent_upto: int
    timeline_limit: int
    #: The effective config: the entries whose current values the client holds (see
    #: :mod:`.required_state`).
    required_state: RequiredState
    #: Users whose member events the client holds for ``$LAZY``, most recently needed
    #: first (:func:`.required_state.remember_lazy`; at most ``MAX_REMEMBERED``).
    lazy_members: tuple[str, ...] = ()
    #: The notification stream position the room's counts were sent at.
    counts_at: int = 0


@dataclass(slots=True)
class ListState:
    """A list as last sent: its count and the room IDs in its windows, in order."""

    count: int
    rooms: list[str]


@dataclass(slots=True)
class Connection:
    """A connection's state as of the position a request builds on (empty when new)."""

    id: int | None = None
    pos: int | None = None
    #: When ``pos`` was recorded (ms since the epoch).
    created_ms: int = 0
    token: StreamToken | None = None
    subscriptions: dict[str, RoomConfig] = field(default_factory=dict)
    lists: dict[str, ListState] = field(default_factory=dict)
    rooms: dict[str, SentRoom] = field(default_factory=dict)


def _config_json(config: RoomConfig) -> list[Any]:
    return [config.required_state.to_json(), config.timeline_limit]


def _config(value: list[Any]) -> RoomConfig:
    return RoomConfig(RequiredState(frozenset((t, k) for t, k in value[0])), int(value[1]))


def now_ms() -> int:
    return int(time.time() * 1000)


async def load_connection(
    conn: Conn, user_id: str, device_id: str, conn_id: str, pos: int | None
) -> Connection:
    """The state of the connection at ``pos``; a new, empty one when ``pos`` is None.

    400 ``M_UNKNOWN_POS`` when ``pos`` is not a live position of this very connection
    (another user's or device's, forgotten, or never given).
    """
    if pos is None:
        return Connection()
    row = await conn.fetchrow(
        "SELECT p.connection_id, p.token, p.subscriptions, p.lists, p.created_at "
        "FROM sliding_positions p "
        "JOIN sliding_connections c ON c.id = p.connection_id WHERE p.pos = $1 "
        "AND c.user_id = $2 AND c.device_id = $3 AND c.conn_id = $4 AND p.created_at > $5",
        pos,
        user_id,
        device_id,
        conn_id,
        now_ms() - POSITION_TTL_MS,
    )
    if row is None:
        raise unknown_pos()
    connection = Connection(
        id=int(row[0]),
        pos=pos,
        created_ms=int(row[4]),
        token=StreamToken.parse(str(row[1])),
        subscriptions={r: _config(v) for r, v in orjson.loads(row[2]).items()},
        lists={n: ListState(int(v[0]), list(v[1])) for n, v in orjson.loads(row[3]).items()},
    )
    rows = await conn.fetch(
        "SELECT room_id, sent_upto, timeline_limit, required_state, lazy_members, counts_at "
        "FROM sliding_rooms WHERE connection_id = $1 AND pos <= $2 ORDER BY pos",
        connection.id,
        pos,
    )
    for r in rows:
        connection.rooms[str(r[0])] = SentRoom(
            int(r[1]),
            int(r[2]),
            RequiredState(frozenset((t, k) for t, k in orjson.loads(r[3]))),
            tuple(orjson.loads(r[4]))[:MAX_REMEMBERED],
            int(r[5]),
        )
    return connection


async def _next(conn: Conn, name: str) -> int:
    return int(
        await conn.fetchval(
            "UPDATE sliding_counters SET value = value + 1 WHERE name = $1 RETURNING value", name
        )
    )


async def _forget(conn: Conn, connection_id: int) -> None:
    for table in ("sliding_rooms", "sliding_positions"):
        await conn.execute(f"DELETE FROM {table} WHERE connection_id = $1", connection_id)
    await conn.execute("DELETE FROM sliding_connections WHERE id = $1", connection_id)


async def forget_expired(conn: Conn, cutoff_ms: int, limit: int = EXPIRE_BATCH) -> int:
    """Drop up to ``limit`` positions created at or before ``cutoff_ms`` (they can no
    longer be used), and every connection left without a position, with its room rows.
    Return how many connections were dropped.

    Called when a connection is made, so each new connection clears away up to
    ``limit`` abandoned ones: the tables stay as large as the connections in use.
    """
    rows = await conn.fetch(
        "SELECT pos, connection_id FROM sliding_positions WHERE created_at <= $1 "
        "ORDER BY created_at LIMIT $2",
        cutoff_ms,
        limit,
    )
    if not rows:
        return 0
    await conn.execute(
        "DELETE FROM sliding_positions WHERE pos = ANY($1)", Array([int(r[0]) for r in rows])
    )
    candidates = sorted({int(r[1]) for r in rows})
    empty = await conn.fetch(
        "SELECT id FROM sliding_connections c WHERE id = ANY($1) AND NOT EXISTS "
        "(SELECT 1 FROM sliding_positions p WHERE p.connection_id = c.id)",
        Array(candidates),
    )
    for r in empty:
        await _forget(conn, int(r[0]))
    return len(empty)


async def record_position(
    conn: Conn,
    user_id: str,
    device_id: str,
    conn_id: str,
    built_on: Connection,
    token: StreamToken,
    subscriptions: dict[str, RoomConfig],
    lists: dict[str, ListState],
    rooms: dict[str, SentRoom],
) -> tuple[int, int]:
    """Record a response built on ``built_on``; return the connection's ID and the new
    position.

    A new connection (``built_on.id`` None) replaces any earlier one of the same
    ``(user, device, conn_id)``. Otherwise ``built_on.pos`` is acknowledged: the
    connection's other positions and the room rows written after it are dropped, and
    room rows it supersedes are compacted away. 400 ``M_UNKNOWN_POS`` if the connection
    was replaced meanwhile. On PostgreSQL, recording a position of a known connection is
    one statement (it may run as :meth:`Engine.write_one`).
    """
    if conn.dialect == "postgres":
        return await _record_position_pg(
            conn, user_id, device_id, conn_id, built_on, token, subscriptions, lists, rooms
        )
    created = now_ms()
    connection_id = built_on.id
    if connection_id is None:
        old = await conn.fetchval(
            "SELECT id FROM sliding_connections WHERE user_id = $1 AND device_id = $2 "
            "AND conn_id = $3",
            user_id,
            device_id,
            conn_id,
        )
        if old is not None:
            await _forget(conn, int(old))
        await forget_expired(conn, created - POSITION_TTL_MS)
        connection_id = await _next(conn, "connection")
        await conn.execute(
            "INSERT INTO sliding_connections (id, user_id, device_id, conn_id, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            connection_id,
            user_id,
            device_id,
            conn_id,
            created,
        )
    else:
        acked = built_on.pos
        assert acked is not None
        dropped = await conn.fetch(
            "DELETE FROM sliding_positions WHERE connection_id = $1 AND pos <> $2 RETURNING pos",
            connection_id,
            acked,
        )
        live = await conn.fetchval("SELECT 1 FROM sliding_positions WHERE pos = $1", acked)
        if live is None:
            raise unknown_pos("This connection was reset by a newer request")
        if any(int(r[0]) > acked for r in dropped):
            # A response after ``acked`` was given but not used: forget what it sent.
            await conn.execute(
                "DELETE FROM sliding_rooms WHERE connection_id = $1 AND pos > $2",
                connection_id,
                acked,
            )
        if acked % COMPACT_EVERY == 0:
            await conn.execute(
                "DELETE FROM sliding_rooms WHERE connection_id = $1 AND pos < $2 AND EXISTS "
                "(SELECT 1 FROM sliding_rooms newer WHERE newer.connection_id = $1 "
                "AND newer.room_id = sliding_rooms.room_id AND newer.pos > sliding_rooms.pos "
                "AND newer.pos <= $2)",
                connection_id,
                acked,
            )
    pos = await _next(conn, "pos")
    await conn.execute(
        "INSERT INTO sliding_positions (pos, connection_id, token, subscriptions, lists, "
        "created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        pos,
        connection_id,
        *_position_values(token, subscriptions, lists),
        created,
    )
    await conn.executemany(
        "INSERT INTO sliding_rooms (connection_id, room_id, pos, sent_upto, timeline_limit, "
        "required_state, lazy_members, counts_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(connection_id, r[0], pos, *r[1:]) for r in _room_values(rooms)],
    )
    return connection_id, pos


def _position_values(
    token: StreamToken, subscriptions: dict[str, RoomConfig], lists: dict[str, ListState]
) -> tuple[str, str, str]:
    """A position's token, subscriptions and lists as stored."""
    return (
        str(token),
        orjson.dumps({r: _config_json(c) for r, c in subscriptions.items()}).decode(),
        orjson.dumps({n: [s.count, s.rooms] for n, s in lists.items()}).decode(),
    )


def _room_values(rooms: dict[str, SentRoom]) -> list[tuple[str, int, int, str, str, int]]:
    """Each room row's columns but ``connection_id`` and ``pos``, in table order."""
    return [
        (
            room_id,
            sent.sent_upto,
            sent.timeline_limit,
            orjson.dumps(sent.required_state.to_json()).decode(),
            orjson.dumps(sent.lazy_members).decode(),
            sent.counts_at,
        )
        for room_id, sent in rooms.items()
    ]


#: The room rows of a new position, from arrays (PostgreSQL).
_ROOMS_FROM_ARRAYS = (
    "INSERT INTO sliding_rooms (connection_id, room_id, pos, sent_upto, timeline_limit, "
    "required_state, lazy_members, counts_at) SELECT {connection}, r.room_id, {pos}, "
    "r.sent_upto, r.timeline_limit, r.required_state, r.lazy_members, r.counts_at "
    "FROM unnest({arrays}) AS r(room_id, sent_upto, timeline_limit, required_state, "
    "lazy_members, counts_at)"
)
_ARRAY_TYPES = ("text", "bigint", "bigint", "text", "text", "bigint")


def _room_arrays(rooms: dict[str, SentRoom], first: int) -> tuple[str, list[Array]]:
    """The ``unnest`` arguments of :data:`_ROOMS_FROM_ARRAYS` (placeholders from
    ``$first``) and their values, one array per column."""
    values = _room_values(rooms)
    columns = [Array([row[i] for row in values]) for i in range(len(_ARRAY_TYPES))]
    sql = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(_ARRAY_TYPES))
    return sql, columns


async def _record_position_pg(
    conn: Conn,
    user_id: str,
    device_id: str,
    conn_id: str,
    built_on: Connection,
    token: StreamToken,
    subscriptions: dict[str, RoomConfig],
    lists: dict[str, ListState],
    rooms: dict[str, SentRoom],
) -> tuple[int, int]:
    """:func:`record_position` on PostgreSQL: what an acknowledged position drops, the
    new position and its room rows in one statement (data-modifying ``WITH`` parts see
    the tables as they were before the statement, so the new rows are safe from the
    deletes). A new connection first drops the connection it replaces and up to
    :data:`EXPIRE_BATCH` expired positions, then gets its ID in the same statement."""
    created = now_ms()
    values = _position_values(token, subscriptions, lists)
    if built_on.id is None:
        await conn.execute(
            "WITH old AS (DELETE FROM sliding_connections WHERE user_id = $1 "
            "AND device_id = $2 AND conn_id = $3 RETURNING id), "
            "p AS (DELETE FROM sliding_positions WHERE connection_id IN (SELECT id FROM old)) "
            "DELETE FROM sliding_rooms WHERE connection_id IN (SELECT id FROM old)",
            user_id,
            device_id,
            conn_id,
        )
        await forget_expired(conn, created - POSITION_TTL_MS)
        arrays, columns = _room_arrays(rooms, 9)
        row = await conn.fetchrow(
            "WITH made AS (UPDATE sliding_counters SET value = value + 1 "
            "WHERE name = 'connection' RETURNING value), "
            "given AS (UPDATE sliding_counters SET value = value + 1 "
            "WHERE name = 'pos' RETURNING value), "
            "c AS (INSERT INTO sliding_connections (id, user_id, device_id, conn_id, "
            "created_at) SELECT value, $1, $2, $3, $4 FROM made), "
            "p AS (INSERT INTO sliding_positions (pos, connection_id, token, subscriptions, "
            "lists, created_at) SELECT given.value, made.value, $5, $6, $7, $8 "
            "FROM given, made), "
            "r AS ("
            + _ROOMS_FROM_ARRAYS.format(
                connection="(SELECT value FROM made)",
                pos="(SELECT value FROM given)",
                arrays=arrays,
            )
            + ") SELECT made.value, given.value FROM made, given",
            user_id,
            device_id,
            conn_id,
            created,
            *values,
            created,
            *columns,
        )
        assert row is not None
        return int(row[0]), int(row[1])
    acked = built_on.pos
    assert acked is not None
    compact = (
        ", compacted AS (DELETE FROM sliding_rooms WHERE connection_id = $1 AND pos < $2 "
        "AND EXISTS (SELECT 1 FROM live) AND EXISTS (SELECT 1 FROM sliding_rooms newer "
        "WHERE newer.connection_id = $1 AND newer.room_id = sliding_rooms.room_id "
        "AND newer.pos > sliding_rooms.pos AND newer.pos <= $2))"
        if acked % COMPACT_EVERY == 0
        else ""
    )
    arrays, columns = _room_arrays(rooms, 7)
    pos = await conn.fetchval(
        "WITH live AS (SELECT 1 FROM sliding_positions WHERE pos = $2), "
        # The connection's other positions; room rows of an unused later one.
        "dropped AS (DELETE FROM sliding_positions WHERE connection_id = $1 AND pos <> $2 "
        "AND EXISTS (SELECT 1 FROM live) RETURNING pos), "
        "unused AS (DELETE FROM sliding_rooms WHERE connection_id = $1 AND pos > $2 "
        "AND EXISTS (SELECT 1 FROM dropped WHERE pos > $2))"
        + compact
        + ", given AS (UPDATE sliding_counters SET value = value + 1 WHERE name = 'pos' "
        "AND EXISTS (SELECT 1 FROM live) RETURNING value), "
        "p AS (INSERT INTO sliding_positions (pos, connection_id, token, subscriptions, "
        "lists, created_at) SELECT value, $1, $3, $4, $5, $6 FROM given), "
        "r AS ("
        + _ROOMS_FROM_ARRAYS.format(connection="$1", pos="given.value", arrays=arrays)
        + ", given) SELECT value FROM given",
        built_on.id,
        acked,
        *values,
        created,
        *columns,
    )
    if pos is None:
        raise unknown_pos("This connection was reset by a newer request")
    return built_on.id, int(pos)
