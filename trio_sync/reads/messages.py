"""``/messages``, ``/context/{eventId}`` and ``/event/{eventId}``: room history on request.

Every event served passes the same checks as a ``/sync`` timeline (history visibility,
the filter, ignored users) and gets the same per-user ``unsigned`` fields.

The order is the room's history order (:mod:`trio_sync.storage.history`): the stream order
``/sync`` uses, with backfilled events placed topologically before the stream event they
precede. Pagination tokens name a place *between* events: a topology token
``t<depth>_<p>`` is the place just before the backfilled event at position ``p``, or else
just before stream position ``p``; a stream token ``s<P>_…`` is the place just after
stream position ``P``. Walking backwards from a place gives the events before it, forwards
the events at or after it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..aggregations import bundles
from ..errors import MatrixError, invalid_param, not_found
from ..filters import RoomEventFilter
from ..storage import Conn
from ..storage import rooms as q
from ..storage.account_data import ignored_users
from ..storage.event_state import state_at_event
from ..storage.history import END, HistoryEvent, Place, history_event, place_of
from ..storage.visibility import RoomAccess
from ..sync.timeline import Viewer
from ..tokens import StreamToken, TopologyToken
from .access import room_access as room_access
from .walk import sees, served, walk

#: ``limit`` above this is treated as this.
MAX_LIMIT = 1000


def parse_place(text: str) -> TopologyToken:
    """A pagination token as the topology token of the same place (400 if malformed)."""
    if text.startswith("s"):
        return TopologyToken(0, StreamToken.parse(text).pdu + 1)
    if text.startswith("t"):
        return TopologyToken.parse(text)
    raise invalid_param(f"Malformed pagination token {text[:64]!r}")


def parse_boundary(text: str) -> int:
    """The stream position a pagination token's place is just before (400 if malformed)."""
    return parse_place(text).pdu


def _stream_place(p: int) -> str:
    return str(TopologyToken(0, p))


@dataclass(frozen=True, slots=True)
class Page:
    """The part of ``/messages`` that says which events to return."""

    backwards: bool
    #: The ``from`` token as given (echoed as ``start``) and the place it names.
    start_token: str | None
    start: TopologyToken | None
    to: TopologyToken | None
    limit: int
    filter: RoomEventFilter


async def _lazy_state(
    conn: Conn, viewer: Viewer, room_id: str, found: list[HistoryEvent]
) -> list[Any]:
    """The member events of the page's senders in the state after its newest event, in
    either direction (:func:`.event_state.state_at_event`: a forked event's own state,
    else the linear state there). One point per page: a sender whose member event differs
    at an older event of the page gets the one at the newest, forked or not. Going
    backwards that is Synapse's point (the chunk's first event); going forwards Synapse
    takes the chunk's first, oldest, event, while here the same events give the same
    ``state`` whichever direction they were fetched in. Two statements; read-only."""
    senders = list(dict.fromkeys(h.event.sender for h in found))
    newest = max(found, key=lambda h: h.place)
    rows = await state_at_event(
        conn, room_id, newest, viewer.fmt, types=[q.MEMBER], members=senders
    )
    return [orjson.Fragment(viewer.serve_state(s.json)) for s in rows]


async def _place(conn: Conn, room_id: str, token: TopologyToken | None, default: Place) -> Place:
    return default if token is None else await place_of(conn, room_id, token)


async def messages(
    conn: Conn, viewer: Viewer, room_id: str, page: Page, now: int
) -> dict[str, Any]:
    """The ``/messages`` response body."""
    access = await room_access(conn, viewer.user_id, room_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    floor = access.earliest_visible()
    lowest = Place.start_of(0 if floor is None else floor)
    if page.backwards:
        high = min(await _place(conn, room_id, page.start, END), Place.before_stream(now + 1))
        low = max(await _place(conn, room_id, page.to, lowest), lowest)
    else:
        low = max(await _place(conn, room_id, page.start, lowest), lowest)
        high = await _place(conn, room_id, page.to, END)
    found: list[HistoryEvent] = []
    more: HistoryEvent | None = None
    if floor is not None and low < high:
        walked = await walk(
            conn,
            room_id,
            access,
            viewer,
            page.filter,
            low=low,
            high=high,
            upto=now,
            limit=page.limit,
            backwards=page.backwards,
        )
        found, more = walked.events, walked.next
    events = [h.event for h in found]
    bundled = await bundles(conn, viewer, access, room_id, events, now)
    body: dict[str, Any] = {
        "chunk": [served(viewer, access, h, bundled) for h in found],
        "start": page.start_token or _stream_place(now + 1 if page.backwards else 1),
    }
    if more is not None and found:
        # Backwards: just before the oldest event returned; forwards: just before the next
        # wanted one (nothing between the two is wanted).
        body["end"] = found[-1].token() if page.backwards else more.token()
    if page.filter.lazy_load_members and found:
        body["state"] = await _lazy_state(conn, viewer, room_id, found)
    return body


async def visible_event(
    conn: Conn, viewer: Viewer, room_id: str, event_id: str, now: int
) -> tuple[HistoryEvent, RoomAccess]:
    """The event of ``room_id`` and the user's access to the room; 403 when the user may
    not read the room (:func:`.access.room_access`), 404 when the event is unknown, of
    another room, or one the user may not see (those are not told apart)."""
    access = await room_access(conn, viewer.user_id, room_id, now)
    found = await history_event(conn, event_id, now, viewer.fmt)
    if found is None or found[0] != room_id:
        raise not_found("Event not found")
    h = found[1]
    if not sees(access, h):
        raise not_found("Event not found")
    return h, access


async def hidden_event(
    conn: Conn, viewer: Viewer, room_id: str, event_id: str, now: int
) -> tuple[HistoryEvent, RoomAccess]:
    """:func:`visible_event` for endpoints whose only answer for an event the user may not
    read is 404 (``/event``, ``/relations``): a room it may not read is 404 too."""
    try:
        return await visible_event(conn, viewer, room_id, event_id, now)
    except MatrixError as exc:
        if exc.errcode == "M_FORBIDDEN":
            raise not_found("Event not found") from None
        raise


async def event(conn: Conn, viewer: Viewer, room_id: str, event_id: str, now: int) -> Any:
    """The ``/rooms/{roomId}/event/{eventId}`` response body. The spec's only answer for
    an event the user may not read is 404, so a room it may not read is 404 here too."""
    h, access = await hidden_event(conn, viewer, room_id, event_id, now)
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    bundled = await bundles(conn, viewer, access, room_id, [h.event], now)
    return served(viewer, access, h, bundled)


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
    h, access = await visible_event(conn, viewer, room_id, event_id, now)
    ev = h.event
    viewer = replace(viewer, ignored=await ignored_users(conn, viewer.user_id))
    n_before = limit // 2
    n_after = limit - n_before
    lowest = Place.start_of(access.earliest_visible() or 0)
    before: list[HistoryEvent] = []
    if n_before and lowest < h.place:
        walked = await walk(
            conn,
            room_id,
            access,
            viewer,
            filt,
            low=lowest,
            high=h.place,
            upto=now,
            limit=n_before,
            backwards=True,
        )
        before = walked.events
    # Even with nothing wanted after it, the walk finds where ``end`` goes.
    walked = await walk(
        conn,
        room_id,
        access,
        viewer,
        filt,
        low=h.place.after(),
        high=END,
        upto=now,
        limit=n_after,
        backwards=False,
    )
    after, following = walked.events, walked.next
    first = before[-1] if before else h
    last = after[-1] if after else h
    members = None
    if filt.lazy_load_members:
        members = list(dict.fromkeys(e.event.sender for e in (*before, h, *after)))
    # The spec's state for /context: the state at the last event returned (its own, when
    # it is an event of a forked history).
    state = await state_at_event(conn, room_id, last, viewer.fmt, members=members)
    window = [ev, *(e.event for e in before), *(e.event for e in after)]
    bundled = await bundles(conn, viewer, access, room_id, window, now)
    return {
        "event": served(viewer, access, h, bundled),
        "events_before": [served(viewer, access, e, bundled) for e in before],
        "events_after": [served(viewer, access, e, bundled) for e in after],
        "start": first.token(),
        "end": following.token() if following is not None else _stream_place(now + 1),
        "state": [orjson.Fragment(viewer.serve_state(s.json)) for s in state],
    }


def parse_limit(text: str | None, default: int) -> int:
    """A ``limit`` query parameter: a non-negative integer, capped at :data:`MAX_LIMIT`."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer")
    return min(int(text), MAX_LIMIT)
