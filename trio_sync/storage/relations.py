"""The relations index: which stored events relate to which (``m.relates_to``).

One ``relations`` row per stored event whose content has an ``m.relates_to`` object with
a string ``rel_type`` and ``event_id``, whatever the ``rel_type``. Rows are written by
ingest with their event, dropped when the event is redacted (no room version keeps
``m.relates_to`` through a redaction) and when the room is purged. Every read here is
bounded by a PDU position ``upto`` (rows at ``p <= upto``) so that an answer never shows
more than a ``/sync`` with that token could.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .engine import Array, Conn, Row

THREAD = "m.thread"
REPLACE = "m.replace"
REFERENCE = "m.reference"
#: The relation types bundled into ``unsigned.m.relations`` (annotations are not: the
#: spec leaves their aggregation unspecified).
BUNDLED = (REPLACE, THREAD, REFERENCE)

INSERT_RELATION = (
    "INSERT INTO relations (event_id, room_id, parent_id, rel_type, event_type, sender, pos, "
    "new_content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING"
)


def relation_row(
    pos: int, event_id: str, room_id: str, etype: str, sender: str, content: Mapping[str, Any]
) -> tuple[object, ...] | None:
    """The ``relations`` row of an event stored at ``pos``, or None when its content does
    not relate it to another event."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if not (isinstance(rel_type, str) and rel_type and isinstance(parent, str) and parent):
        return None
    new_content = 1 if isinstance(content.get("m.new_content"), dict) else 0
    return (event_id, room_id, parent, rel_type, etype, sender, pos, new_content)


async def drop_relation(conn: Conn, event_id: str) -> None:
    """Forget the relation of ``event_id`` (it was redacted)."""
    await conn.execute("DELETE FROM relations WHERE event_id = $1", event_id)


@dataclass(frozen=True, slots=True)
class Child:
    """One child of a parent event, with what judging and choosing it needs."""

    parent_id: str
    rel_type: str
    event_id: str
    pos: int
    sender: str
    type: str
    state_key: str | None
    origin_server_ts: int
    new_content: bool


@dataclass(frozen=True, slots=True)
class Parent:
    """What the m.replace rules need to know of a parent beyond its served form."""

    sender: str
    type: str
    state_key: str | None
    redacted: bool
    #: The parent's own ``rel_type``, if it relates to another event.
    rel_type: str | None


async def parents_with_children(
    conn: Conn, room_ids: Sequence[str], parent_ids: Sequence[str], upto: int
) -> set[str]:
    """Which of ``parent_ids`` (events of ``room_ids``) have a child of a bundled relation
    type at ``p <= upto``: one query for any number of rooms."""
    if not parent_ids:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT parent_id FROM relations WHERE room_id = ANY($1) "
        "AND parent_id = ANY($2) AND rel_type = ANY($3) AND pos <= $4",
        Array(list(room_ids)),
        Array(list(parent_ids)),
        Array(list(BUNDLED)),
        upto,
    )
    return {str(r[0]) for r in rows}


async def parents_in_range(
    conn: Conn, room_ids: Sequence[str], after: int, upto: int, children_upto: int
) -> dict[str, set[str]]:
    """By room of ``room_ids``, its syncable events at ``after < p <= upto`` that have a
    child of a bundled relation type at ``p <= children_upto`` (rooms with none left out):
    one query that needs no event IDs, so it can go with the query that reads those
    events (a short range: it scans it)."""
    rows = await conn.fetch(
        "SELECT DISTINCT e.room_id, e.event_id FROM events e JOIN relations r "
        "ON r.room_id = e.room_id AND r.parent_id = e.event_id "
        "WHERE e.pos > $2 AND e.pos <= $3 AND e.exclude_from_sync = 0 "
        "AND e.room_id = ANY($1) AND r.rel_type = ANY($4) AND r.pos <= $5",
        Array(list(room_ids)),
        after,
        upto,
        Array(list(BUNDLED)),
        children_upto,
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(str(r[0]), set()).add(str(r[1]))
    return out


@dataclass(frozen=True, slots=True)
class NewestParents:
    """Which of a room's newest syncable events have a child of a bundled relation type
    (see :func:`parents_among_newest`)."""

    parents: frozenset[str]
    #: The events looked at are all those of the range at ``p >= lowest``.
    lowest: int

    def cover(self, positions: Sequence[int]) -> bool:
        """Whether the events at ``positions`` (in the range) were all looked at."""
        return all(p >= self.lowest for p in positions)


async def parents_among_newest(
    conn: Conn, room_id: str, after: int, upto: int, newest: int, children_upto: int
) -> NewestParents:
    """Of the room's ``newest`` newest syncable events at ``after < p <= upto``, those
    with a child of a bundled relation type at ``p <= children_upto``: one query that
    needs no event IDs, so it can be asked before a timeline is chosen from those events
    (worth it for a narrow range: the query costs more to plan than a plain page)."""
    rows = await conn.fetch(
        "SELECT e.pos, e.event_id, EXISTS (SELECT 1 FROM relations r WHERE r.room_id = $1 "
        "AND r.parent_id = e.event_id AND r.rel_type = ANY($5) AND r.pos <= $6) "
        "FROM (SELECT event_id, pos FROM events WHERE room_id = $1 AND pos > $2 "
        "AND pos <= $3 AND exclude_from_sync = 0 ORDER BY pos DESC LIMIT $4) AS e",
        room_id,
        after,
        upto,
        newest,
        Array(list(BUNDLED)),
        children_upto,
    )
    lowest = after + 1 if len(rows) < newest else min(int(r[0]) for r in rows)
    return NewestParents(frozenset(str(r[1]) for r in rows if r[2]), lowest)


_CHILD_COLUMNS = (
    "r.parent_id, r.rel_type, r.event_id, r.pos, r.sender, c.type, c.state_key, "
    "c.origin_server_ts, r.new_content"
)


def _child(r: Row) -> Child:
    return Child(r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6], int(r[7]), bool(r[8]))


async def children(
    conn: Conn, room_id: str, parent_ids: Sequence[str], upto: int
) -> tuple[list[Child], dict[str, Parent]]:
    """In one query: every child of ``parent_ids`` (in ``room_id``) of a bundled relation
    type at ``p <= upto``, oldest first; and, for parents with children, their facts."""
    rows = await conn.fetch(
        f"SELECT {_CHILD_COLUMNS}, p.sender, p.type, p.state_key, "
        "p.redacted_because, pr.rel_type FROM relations r "
        "JOIN events c ON c.event_id = r.event_id "
        "JOIN events p ON p.event_id = r.parent_id AND p.room_id = r.room_id "
        "LEFT JOIN relations pr ON pr.event_id = r.parent_id "
        "WHERE r.room_id = $1 AND r.parent_id = ANY($2) AND r.rel_type = ANY($3) "
        "AND r.pos <= $4 ORDER BY r.pos",
        room_id,
        Array(list(parent_ids)),
        Array(list(BUNDLED)),
        upto,
    )
    kids: list[Child] = []
    parents: dict[str, Parent] = {}
    for r in rows:
        kids.append(_child(r))
        if r[0] not in parents:
            parents[r[0]] = Parent(r[9], r[10], r[11], r[12] is not None, r[13])
    return kids, parents


@dataclass(frozen=True, slots=True)
class RelationQuery:
    """Which children ``/relations`` asks for."""

    room_id: str
    parent_id: str
    rel_type: str | None = None
    event_type: str | None = None
    #: How many levels of relations to follow: 1 for direct children only.
    depth: int = 1


async def related_page(
    conn: Conn, query: RelationQuery, after: int, before: int, limit: int, *, newest_first: bool
) -> list[tuple[int, str]]:
    """Up to ``limit`` (position, event ID) of the children of ``query.parent_id`` (and
    their children, down to ``query.depth`` levels) at ``after < p < before`` that match
    the type filters: the newest of them newest first, or the oldest oldest first."""
    where = ""
    args: list[object] = [query.room_id, query.parent_id, query.depth, after, before, limit]
    if query.rel_type is not None:
        args.append(query.rel_type)
        where += f" AND r.rel_type = ${len(args)}"
    if query.event_type is not None:
        args.append(query.event_type)
        where += f" AND r.event_type = ${len(args)}"
    order = "DESC" if newest_first else "ASC"
    rows = await conn.fetch(
        "WITH RECURSIVE tree (event_id, depth) AS ("
        "SELECT event_id, 1 FROM relations WHERE room_id = $1 AND parent_id = $2 "
        "UNION ALL SELECT r.event_id, t.depth + 1 FROM relations r "
        "JOIN tree t ON r.parent_id = t.event_id WHERE r.room_id = $1 AND t.depth < $3) "
        "SELECT DISTINCT r.pos, r.event_id FROM tree t JOIN relations r ON r.event_id = t.event_id "
        f"WHERE r.pos > $4 AND r.pos < $5{where} ORDER BY r.pos {order} LIMIT $6",
        *args,
    )
    return [(int(r[0]), str(r[1])) for r in rows]


async def thread_replies(
    conn: Conn, room_id: str, before: int, upto: int, limit: int
) -> list[Child]:
    """Up to ``limit`` thread replies (``m.thread`` children) of ``room_id`` at
    ``p < before`` and ``p <= upto``, newest first."""
    rows = await conn.fetch(
        f"SELECT {_CHILD_COLUMNS} FROM relations r JOIN events c ON c.event_id = r.event_id "
        "WHERE r.room_id = $1 AND r.rel_type = $2 AND r.pos < $3 AND r.pos <= $4 "
        "ORDER BY r.pos DESC LIMIT $5",
        room_id,
        THREAD,
        before,
        upto,
        limit,
    )
    return [_child(r) for r in rows]


async def thread_of(conn: Conn, event_id: str) -> str | None:
    """The thread root ``event_id`` belongs to (as a reply), if any."""
    value = await conn.fetchval(
        "SELECT parent_id FROM relations WHERE event_id = $1 AND rel_type = $2", event_id, THREAD
    )
    return None if value is None else str(value)


async def newest_in_thread(conn: Conn, room_id: str, thread_id: str) -> int | None:
    """The position of the newest event of a thread: of its newest reply, else of its
    root (``thread_id`` ``main``: the newest syncable event of the room in no thread)."""
    if thread_id == "main":
        value = await conn.fetchval(
            "SELECT e.pos FROM events e WHERE e.room_id = $1 AND e.exclude_from_sync = 0 "
            "AND NOT EXISTS (SELECT 1 FROM relations r WHERE r.event_id = e.event_id "
            "AND r.rel_type = $2) ORDER BY e.pos DESC LIMIT 1",
            room_id,
            THREAD,
        )
    else:
        value = await conn.fetchval(
            "SELECT COALESCE((SELECT MAX(pos) FROM relations WHERE room_id = $1 "
            "AND parent_id = $2 AND rel_type = $3), "
            "(SELECT pos FROM events WHERE event_id = $2 AND room_id = $1))",
            room_id,
            thread_id,
            THREAD,
        )
    return None if value is None else int(value)
