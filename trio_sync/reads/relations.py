"""``/relations/{eventId}`` and ``/threads``: the relations index on request.

Both serve events exactly as ``/messages`` does (history visibility, ignored users, the
per-user ``unsigned`` fields, bundled aggregations). Pagination tokens are boundaries
between positions, as in :mod:`trio_sync.reads.messages`: a ``/messages`` or ``/sync``
token is accepted as ``from`` or ``to``.

* ``/relations``: the children of an event the user may see, newest first (``dir=b``,
  the default) or oldest first, optionally only of one ``rel_type`` and event type, and
  with ``recurse`` also their children down to :data:`RECURSION_DEPTH` levels.
* ``/threads``: the room's thread roots by their ``latest_event`` for this user (the
  newest reply it may see, from a sender it does not ignore), newest first, as the spec
  orders them; a thread shows only when the user may see its root and at least one of
  its replies. ``include=participated`` keeps the threads the user
  started or replied to. A root sent by an ignored user is served redacted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..aggregations import Planned, bundles, counts_for, plan_bundles, serve_bundles
from ..filters import RoomEventFilter
from ..redaction import redact
from ..storage import Conn
from ..storage import relations as rel
from ..storage import rooms as q
from ..storage.account_data import ignored_users
from ..storage.visibility import RoomAccess
from ..sync.timeline import PAGE_MAX, Viewer, passes
from ..tokens import TopologyToken
from .messages import hidden_event, room_access

#: Levels of relations ``recurse=true`` follows (the children, theirs, and theirs).
RECURSION_DEPTH = 3
_ANY = RoomEventFilter()


@dataclass(frozen=True, slots=True)
class RelationsPage:
    """What one ``/relations`` request asks for."""

    rel_type: str | None
    event_type: str | None
    #: ``recurse`` as given (None when absent).
    recurse: bool | None
    backwards: bool
    #: The ``from`` token as given (echoed as ``prev_batch``), and the boundaries.
    from_token: str | None
    start: int | None
    to: int | None
    limit: int


def _token(b: int, depth: int) -> str:
    return str(TopologyToken(depth, b))


async def _wanted_events(
    conn: Conn,
    viewer: Viewer,
    access: RoomAccess,
    room_id: str,
    ids: list[str],
) -> list[q.TimelineEvent]:
    """The events of ``ids`` (in that order) the viewer may see and does not ignore."""
    found = await q.events_by_ids(conn, room_id, ids, viewer.fmt)
    return [
        ev
        for ev in (found[i] for i in ids if i in found)
        if access.visible(ev.pos, ev.type, ev.state_key) and passes(_ANY, viewer, ev)
    ]


async def relations(
    conn: Conn, viewer: Viewer, room_id: str, event_id: str, page: RelationsPage, now: int
) -> dict[str, Any]:
    """The ``/relations/{eventId}`` response body; 404 when the parent is unknown, in
    another room, or not visible to the user."""
    _parent, access = await hidden_event(conn, viewer, room_id, event_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    depth = RECURSION_DEPTH if page.recurse else 1
    query = rel.RelationQuery(room_id, event_id, page.rel_type, page.event_type, depth)
    if page.backwards:
        low = 0 if page.to is None else page.to - 1
        high = now + 1 if page.start is None else min(page.start, now + 1)
    else:
        low = 0 if page.start is None else page.start - 1
        high = now + 1 if page.to is None else min(page.to, now + 1)
    picked: list[q.TimelineEvent] = []
    more = False
    size = min(page.limit + 1, PAGE_MAX)
    while low < high - 1 and not more:
        rows = await rel.related_page(conn, query, low, high, size, newest_first=page.backwards)
        for ev in await _wanted_events(conn, viewer, access, room_id, [i for _, i in rows]):
            if len(picked) == page.limit:
                more = True
                break
            picked.append(ev)
        if len(rows) < size:
            break
        if page.backwards:
            high = rows[-1][0]
        else:
            low = rows[-1][0]
        size = min(size * 2, PAGE_MAX)
    bundled = await bundles(conn, viewer, access, room_id, picked, now)
    body: dict[str, Any] = {
        "chunk": [orjson.Fragment(viewer.serve(e, access, bundled.get(e.event_id))) for e in picked]
    }
    if more and picked:
        last = picked[-1]
        body["next_batch"] = _token(last.pos if page.backwards else last.pos + 1, last.depth)
    if page.from_token:
        body["prev_batch"] = page.from_token
    if page.recurse is not None:
        body["recursion_depth"] = depth
    return body


async def threads(
    conn: Conn,
    viewer: Viewer,
    room_id: str,
    participated: bool,
    start: int | None,
    limit: int,
    now: int,
) -> dict[str, Any]:
    """The ``/threads`` response body; 403 unless the user is or was in the room (or it is
    world readable).

    Each thread sits at its ``latest_event`` for this user: its newest reply the user may
    see, from a sender it does not ignore. ``start`` (from ``next_batch``) keeps the
    threads whose ``latest_event`` is at ``p < start``, so a thread is never served twice
    while paginating, even when replies arrive in between. Replies are walked newest
    first; a thread is placed at the first reply of it that counts.
    """
    access = await room_access(conn, viewer.user_id, room_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    before = now + 1 if start is None else min(start, now + 1)
    chosen: list[q.TimelineEvent] = []
    kept = Planned({})
    next_batch: str | None = None
    placed: set[str] = set()
    cursor, size = before, min(limit + 1, PAGE_MAX)
    while next_batch is None:
        replies = await rel.thread_replies(conn, room_id, cursor, now, size)
        fresh: list[str] = []
        for child in replies:
            if child.parent_id not in placed and counts_for(viewer, access, child):
                placed.add(child.parent_id)
                fresh.append(child.parent_id)
        if fresh:
            planned = await plan_bundles(conn, viewer, access, room_id, fresh, now)
            found = await q.events_by_ids(conn, room_id, fresh, viewer.fmt)
            for root_id in fresh:
                latest, root = planned.latest_reply(root_id), found.get(root_id)
                if latest is None or latest.pos >= before:
                    continue  # its latest_event is newer: it belongs to an earlier page
                if root is None or not access.visible(root.pos, root.type, root.state_key):
                    continue
                if participated and not planned.participated(root_id):
                    continue
                if len(chosen) == limit:
                    next_batch = _token(latest.pos + 1, 0)
                    break
                chosen.append(root)
                kept.plans[root_id] = planned.plans[root_id]
        if len(replies) < size:
            break
        cursor = replies[-1].pos
        size = min(size * 2, PAGE_MAX)
    bundled = await serve_bundles(conn, viewer, access, room_id, kept, now)
    body: dict[str, Any] = {
        "chunk": [
            await _root(conn, viewer, access, root, bundled.get(root.event_id, {}))
            for root in chosen
        ]
    }
    if next_batch is not None:
        body["next_batch"] = next_batch
    return body


async def _root(
    conn: Conn, viewer: Viewer, access: RoomAccess, root: q.TimelineEvent, bundle: dict[str, Any]
) -> Any:
    """A thread root as served by ``/threads``: redacted when its sender is ignored."""
    served = viewer.serve(root, access, bundle)
    if root.sender not in viewer.ignored or root.sender == viewer.user_id:
        return orjson.Fragment(served)
    version = await conn.fetchval(
        "SELECT room_version FROM events WHERE event_id = $1", root.event_id
    )
    event = orjson.loads(served)
    redacted = redact(event, str(version))
    redacted["unsigned"] = event.get("unsigned", {})
    return redacted
