"""``/messages``, ``/context/{eventId}`` and ``/event/{eventId}``: room history on request.

Every event served passes the same checks as a ``/sync`` timeline (history visibility,
the filter, ignored users) and gets the same per-user ``unsigned`` fields.

Pagination tokens name a place *between* events, as a boundary position ``b``: events
before it are ``p < b``, events after it ``p >= b``. A stream token ``s<P>_…`` is the
place just after event ``P`` (``b = P + 1``); a topology token ``t<depth>_<p>`` is the
place just before event ``p`` (``b = p``). Order is the room's stream order, which ingest
keeps causal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..errors import MatrixError, invalid_param, not_found
from ..filters import RoomEventFilter
from ..storage import Conn
from ..storage import rooms as q
from ..storage.account_data import ignored_users
from ..storage.visibility import RoomAccess
from ..sync.timeline import Viewer, scan
from ..tokens import StreamToken, TopologyToken
from .access import room_access as room_access

#: ``limit`` above this is treated as this.
MAX_LIMIT = 1000


def parse_boundary(text: str) -> int:
    """The boundary position a pagination token names (400 if malformed)."""
    if text.startswith("s"):
        return StreamToken.parse(text).pdu + 1
    if text.startswith("t"):
        return TopologyToken.parse(text).pdu
    raise invalid_param(f"Malformed pagination token {text[:64]!r}")


def _boundary_token(b: int, depth: int) -> str:
    return str(TopologyToken(depth, b))


@dataclass(frozen=True, slots=True)
class Page:
    """The part of ``/messages`` that says which events to return."""

    backwards: bool
    #: The ``from`` token as given (echoed as ``start``) and the boundary it names.
    start_token: str | None
    start: int | None
    to: int | None
    limit: int
    filter: RoomEventFilter


async def _lazy_state(
    conn: Conn,
    viewer: Viewer,
    room_id: str,
    events: list[q.TimelineEvent],
    at: int,
) -> list[Any]:
    senders = list(dict.fromkeys(e.sender for e in events))
    if not senders:
        return []
    rows = await q.state_at(conn, room_id, at, viewer.fmt, types=[q.MEMBER], members=senders)
    return [orjson.Fragment(viewer.serve_state(s.json)) for s in rows]


async def messages(
    conn: Conn, viewer: Viewer, room_id: str, page: Page, now: int
) -> dict[str, Any]:
    """The ``/messages`` response body."""
    access = await room_access(conn, viewer.user_id, room_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    floor = access.earliest_visible()
    if page.backwards:
        start = now + 1 if page.start is None else min(page.start, now + 1)
        low = page.to if page.to is not None else 1
        if floor is not None:
            low = max(low, floor)
        after, before = low - 1, start
    else:
        start = 1 if page.start is None else page.start
        high = page.to if page.to is not None else now + 1
        after, before = max(start, floor or 0) - 1, min(high, now + 1)
    events: list[q.TimelineEvent] = []
    more = False
    if floor is not None and after < before - 1:
        events, more = await scan(
            conn,
            room_id,
            access,
            viewer,
            page.filter,
            after=after,
            before=before,
            limit=page.limit,
            backwards=page.backwards,
        )
    body: dict[str, Any] = {
        "chunk": [orjson.Fragment(viewer.serve(e, access)) for e in events],
        "start": page.start_token or _boundary_token(start, events[-1].depth if events else 0),
    }
    if more and events:
        last = events[-1]
        body["end"] = _boundary_token(last.pos if page.backwards else last.pos + 1, last.depth)
    if page.filter.lazy_load_members and events:
        body["state"] = await _lazy_state(conn, viewer, room_id, events, max(e.pos for e in events))
    return body


async def visible_event(
    conn: Conn, viewer: Viewer, room_id: str, event_id: str, now: int
) -> tuple[q.TimelineEvent, RoomAccess]:
    """The event of ``room_id`` and the user's access to the room; 403 when the user may
    not read the room (:func:`.access.room_access`), 404 when the event is unknown, of
    another room, or one the user may not see (those are not told apart)."""
    access = await room_access(conn, viewer.user_id, room_id, now)
    found = await q.event_by_id(conn, event_id, viewer.fmt)
    if found is None or found[1].pos > now or found[0] != room_id:
        raise not_found("Event not found")
    ev = found[1]
    if not access.visible(ev.pos, ev.type, ev.state_key):
        raise not_found("Event not found")
    return ev, access


async def event(conn: Conn, viewer: Viewer, room_id: str, event_id: str, now: int) -> Any:
    """The ``/rooms/{roomId}/event/{eventId}`` response body. The spec's only answer for
    an event the user may not read is 404, so a room it may not read is 404 here too."""
    try:
        ev, access = await visible_event(conn, viewer, room_id, event_id, now)
    except MatrixError as exc:
        if exc.errcode == "M_FORBIDDEN":
            raise not_found("Event not found") from None
        raise
    return orjson.Fragment(viewer.serve(ev, access))


async def context(
    conn: Conn,
    viewer: Viewer,
    room_id: str,
    event_id: str,
    limit: int,
    filt: RoomEventFilter,
    now: int,
) -> dict[str, Any]:
    """The ``/context/{eventId}`` response body: the event, up to ``limit`` events around
    it (half before, the rest after), and the state at it."""
    ev, access = await visible_event(conn, viewer, room_id, event_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    n_before = limit // 2
    n_after = limit - n_before
    floor = access.earliest_visible() or 1
    before: list[q.TimelineEvent] = []
    after: list[q.TimelineEvent] = []
    if n_before:
        before, _ = await scan(
            conn,
            room_id,
            access,
            viewer,
            filt,
            after=floor - 1,
            before=ev.pos,
            limit=n_before,
            backwards=True,
        )
    if n_after:
        after, _ = await scan(
            conn,
            room_id,
            access,
            viewer,
            filt,
            after=ev.pos,
            before=now + 1,
            limit=n_after,
            backwards=False,
        )
    first = before[-1] if before else ev
    last = after[-1] if after else ev
    members = None
    if filt.lazy_load_members:
        members = list(dict.fromkeys(e.sender for e in (*before, ev, *after)))
    # The spec's state for /context: the state at the last event returned.
    state = await q.state_at(conn, room_id, last.pos, viewer.fmt, members=members)
    return {
        "event": orjson.Fragment(viewer.serve(ev, access)),
        "events_before": [orjson.Fragment(viewer.serve(e, access)) for e in before],
        "events_after": [orjson.Fragment(viewer.serve(e, access)) for e in after],
        "start": _boundary_token(first.pos, first.depth),
        "end": _boundary_token(last.pos + 1, last.depth),
        "state": [orjson.Fragment(viewer.serve_state(s.json)) for s in state],
    }


def parse_limit(text: str | None, default: int) -> int:
    """A ``limit`` query parameter: a non-negative integer, capped at :data:`MAX_LIMIT`."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return min(int(text), MAX_LIMIT)
