"""Walking a room's history (``storage/history.py`` order) for ``/messages`` and
``/context``: the events one user may see and a filter admits, page by page."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

import orjson

from ..aggregations import Bundles
from ..filters import RoomEventFilter
from ..storage import Conn
from ..storage.history import HistoryEvent, Place, history_page
from ..storage.visibility import RoomAccess
from ..sync.timeline import PAGE_MAX, Viewer, passes


@dataclass(frozen=True, slots=True)
class Walked:
    """What :func:`walk` found."""

    #: In walking order.
    events: list[HistoryEvent]
    #: The next wanted event beyond the last one returned, if any.
    next: HistoryEvent | None


def sees(access: RoomAccess, h: HistoryEvent) -> bool:
    """Whether the user may see ``h``: a backfilled event as one just before its anchor."""
    ev = h.event
    if h.backfilled:
        return access.visible_just_before(ev.pos)
    return access.visible(ev.pos, ev.type, ev.state_key)


def served(
    viewer: Viewer, access: RoomAccess, h: HistoryEvent, bundled: Bundles
) -> orjson.Fragment:
    """``h`` as the viewer gets it, with its bundled aggregations. A backfilled event's
    ``unsigned.membership`` comes from the linear state before its anchor, the state
    :func:`sees` judges it by, never from the anchor's own (forked) state."""
    judge = access.linear() if h.backfilled else access
    return orjson.Fragment(viewer.serve(h.event, judge, bundled.get(h.event.event_id)))


async def _pages(
    conn: Conn,
    room_id: str,
    fmt: str,
    low: Place,
    high: Place,
    upto: int,
    first: int,
    backwards: bool,
) -> AsyncGenerator[list[HistoryEvent], None]:
    page = first
    while True:
        rows = await history_page(conn, room_id, low, high, upto, page, fmt, newest_first=backwards)
        yield rows
        if len(rows) < page:
            return
        if backwards:
            high = rows[-1].place
        else:
            low = rows[-1].place.after()
        page = min(page * 2, PAGE_MAX)


async def walk(
    conn: Conn,
    room_id: str,
    access: RoomAccess,
    viewer: Viewer,
    filt: RoomEventFilter,
    *,
    low: Place,
    high: Place,
    upto: int,
    limit: int,
    backwards: bool,
) -> Walked:
    """Up to ``limit`` wanted events with ``low <= key < high`` stored at positions
    ``<= upto``, walking down from ``high`` (``backwards``) or up from ``low``."""
    picked: list[HistoryEvent] = []
    pages = _pages(conn, room_id, viewer.fmt, low, high, upto, limit + 1, backwards)
    async with aclosing(pages):
        async for rows in pages:
            for h in rows:
                if sees(access, h) and passes(filt, viewer, h.event):
                    if len(picked) == limit:
                        return Walked(picked, h)
                    picked.append(h)
    return Walked(picked, None)
