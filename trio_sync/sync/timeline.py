"""Choosing and serving room events for one user: visibility, filters, ``unsigned``.

Used by ``/sync`` timelines and by the read endpoints (``/messages``, ``/context``,
``/event``), so every place that serves an event applies the same rules:

* history visibility (:mod:`trio_sync.storage.visibility`);
* the client's ``RoomEventFilter`` (types, senders, ``contains_url``) and ignored users;
* per-user ``unsigned`` fields: ``age``, ``membership`` (the user's membership at the
  event) and ``transaction_id`` (only to the device that sent the event);
* ``event_format`` and ``event_fields``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from ..client_format import with_unsigned
from ..filters import RoomEventFilter, apply_event_fields
from ..storage import Conn
from ..storage import rooms as q
from ..storage.visibility import RoomAccess
from ..tokens import StreamToken, TopologyToken

#: The most events one page read asks for while looking for visible, matching ones.
PAGE_MAX = 1000


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who events are served to, and in which form."""

    user_id: str
    session_id: int | None = None
    fmt: str = "client"
    fields: tuple[str, ...] | None = None
    ignored: frozenset[str] = frozenset()
    now_ms: int = 0

    def serve(
        self,
        ev: q.TimelineEvent,
        access: RoomAccess | None,
        relations: dict[str, Any] | None = None,
    ) -> str:
        """``ev`` as this viewer gets it (JSON text), with ``relations`` (its bundled
        aggregations, see :mod:`trio_sync.aggregations`) as ``unsigned.m.relations``.

        The client format always has an ``unsigned`` object (empty when there is nothing
        to put in it). Without ``event_fields``, an event stored without ``unsigned`` gets
        it spliced onto its stored text (:func:`~trio_sync.client_format.with_unsigned`);
        any other is parsed, completed and dumped."""
        if self.fmt == "federation":  # no per-user parts: the stored PDU as it is
            return self.serve_as(ev, None, False, relations)
        return self.serve_as(ev, *self.unsigned_parts(ev, access), relations)

    def serve_as(
        self,
        ev: q.TimelineEvent,
        membership: str | None,
        own: bool,
        relations: dict[str, Any] | None = None,
    ) -> str:
        """:meth:`serve` given what :meth:`unsigned_parts` returned for ``ev``."""
        if self.fmt == "federation":
            if self.fields is None:
                return ev.json
            return orjson.dumps(apply_event_fields(orjson.loads(ev.json), self.fields)).decode()
        extra = self._unsigned(ev, membership, own, relations)
        if self.fields is None:
            spliced = with_unsigned(ev.json, orjson.dumps(extra).decode())
            if spliced is not None:
                return spliced
        event: dict[str, Any] = orjson.loads(ev.json)
        unsigned = event.get("unsigned")
        if not isinstance(unsigned, dict):
            unsigned = event["unsigned"] = {}
        unsigned.update(extra)
        if self.fields is not None:
            event = apply_event_fields(event, self.fields)
        return orjson.dumps(event).decode()

    def _unsigned(
        self,
        ev: q.TimelineEvent,
        membership: str | None,
        own: bool,
        relations: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The ``unsigned`` keys ``ev`` gets for this viewer on top of the stored ones, in
        this order: ``age`` (when ``now_ms`` is set), ``membership``, ``transaction_id``,
        ``m.relations`` (when ``relations`` is not empty)."""
        extra: dict[str, Any] = {}
        if self.now_ms:
            extra["age"] = max(0, self.now_ms - ev.origin_server_ts)
        if membership is not None:
            extra["membership"] = membership
        if own:
            extra["transaction_id"] = ev.txn_id
        if relations:
            extra["m.relations"] = relations
        return extra

    def unsigned_parts(
        self, ev: q.TimelineEvent, access: RoomAccess | None
    ) -> tuple[str | None, bool]:
        """What of ``ev``'s ``unsigned`` is this viewer's own: the user's membership at
        the event (None without ``access``), and whether this viewer's device sent it
        (then it gets ``transaction_id``)."""
        membership = (
            None if access is None else access.unsigned_membership(ev.pos, ev.type, ev.state_key)
        )
        own = (
            ev.txn_id is not None
            and ev.sender == self.user_id
            and self.session_id is not None
            and ev.txn_session == self.session_id
        )
        return membership, own

    def serve_state(self, json: str) -> str:
        """A state event as this viewer gets it."""
        if self.fields is None:
            return json
        return orjson.dumps(apply_event_fields(orjson.loads(json), self.fields)).decode()


def first_page_size(limit: int) -> int:
    """How many events :func:`select_recent` reads first, for a timeline of ``limit``."""
    return limit + 1


def is_plain(filt: RoomEventFilter) -> bool:
    """True when ``filt`` lets every event through (room rules aside)."""
    return (
        filt.types is None
        and not filt.not_types
        and filt.senders is None
        and not filt.not_senders
        and filt.contains_url is None
    )


def passes(filt: RoomEventFilter, viewer: Viewer, ev: q.TimelineEvent) -> bool:
    """Whether ``ev`` passes the filter's event rules and is not from an ignored user.

    The user's own events are never hidden as ignored.
    """
    if ev.sender in viewer.ignored and ev.sender != viewer.user_id:
        return False
    probe: dict[str, Any] = {"type": ev.type, "sender": ev.sender}
    if filt.contains_url is not None:
        probe["content"] = orjson.loads(ev.json).get("content")
    return filt.matches(probe)


def _wanted(
    filt: RoomEventFilter, viewer: Viewer, access: RoomAccess, ev: q.TimelineEvent, check: bool
) -> bool:
    if check and not access.visible(ev.pos, ev.type, ev.state_key):
        return False
    return passes(filt, viewer, ev)


@dataclass(slots=True)
class Selected:
    """What :func:`select_recent` chose."""

    #: Oldest first.
    events: list[q.TimelineEvent]
    #: Another wanted event lies before the first one.
    limited: bool
    #: Some event of the range older than the first one was left out (so state may have
    #: changed before the timeline without the timeline showing it).
    gap: bool
    #: Some event between the first and the last one was left out (so state may have
    #: changed inside the timeline without the timeline showing it).
    hidden_within: bool


async def select_recent(
    conn: Conn,
    room_id: str,
    access: RoomAccess,
    viewer: Viewer,
    filt: RoomEventFilter,
    *,
    after: int,
    upto: int,
    limit: int,
    preread: Sequence[q.TimelineEvent] | None = None,
    first_page: list[q.TimelineEvent] | None = None,
) -> Selected:
    """The newest ``limit`` events at ``after < p <= upto`` the user may see and the filter
    admits.

    ``preread`` is every syncable event of the room in that range, oldest first, when the
    caller has read them already. Otherwise pages are read newest first until
    ``limit + 1`` wanted events are found or the range is exhausted; ``first_page`` is
    the first of those pages (:func:`first_page_size` newest events, newest first) when
    the caller has read it already (for many rooms at once).
    """
    check = not access.everything_visible(after, upto)
    if check:
        first_page = None  # read from the visibility floor instead (below)
    plain = not check and is_plain(filt) and not viewer.ignored
    picked: list[q.TimelineEvent] = []
    oldest_skipped = upto + 1
    newest_skipped = 0
    raised = False
    if check and preread is None:
        # Nothing before this can be visible: don't read it (but count it as left out).
        floor = access.earliest_visible()
        low = upto if floor is None else max(after, floor - 1)
        raised, after = low > after, low
    if preread is not None:
        pages = _given(list(reversed(preread)))
    else:
        pages = _pages(
            conn, room_id, viewer.fmt, after, upto + 1, first_page_size(limit), first_page
        )
    async with aclosing(pages):
        async for rows in pages:
            for ev in rows:
                if plain or _wanted(filt, viewer, access, ev, check):
                    picked.append(ev)
                    if len(picked) > limit:
                        break
                else:
                    oldest_skipped = ev.pos
                    newest_skipped = max(newest_skipped, ev.pos)
            if len(picked) > limit:
                break
    limited = len(picked) > limit
    picked = picked[:limit]
    picked.reverse()
    start = picked[0].pos if picked else upto + 1
    return Selected(
        picked,
        limited,
        limited or raised or oldest_skipped < start,
        bool(picked) and newest_skipped > start,
    )


def prev_batch(events: Sequence[q.TimelineEvent], upto: int, now: StreamToken) -> str:
    """The ``prev_batch`` of a timeline of ``events`` ending at ``upto``: where
    ``/messages`` paginates back from (before the first event, or from ``upto``)."""
    if events:
        return str(TopologyToken(events[0].depth, events[0].pos))
    return str(now) if upto == now.pdu else str(TopologyToken(0, upto + 1))


async def _given(rows: list[q.TimelineEvent]) -> AsyncGenerator[list[q.TimelineEvent], None]:
    yield rows


async def _pages(
    conn: Conn,
    room_id: str,
    fmt: str,
    after: int,
    before: int,
    first: int,
    first_rows: list[q.TimelineEvent] | None = None,
    *,
    backwards: bool = True,
) -> AsyncGenerator[list[q.TimelineEvent], None]:
    """Pages of the room's events at ``after < p < before``, growing from ``first`` events:
    newest first walking down (``backwards``), or oldest first walking up. ``first_rows``
    is the first page when the caller has read it already."""
    low, high, page = after, before, first
    while True:
        if first_rows is not None:
            rows, first_rows = first_rows, None
        else:
            rows = await q.events_page(conn, room_id, low, high, page, fmt, newest_first=backwards)
        yield rows
        if len(rows) < page:
            return
        if backwards:
            high = rows[-1].pos
        else:
            low = rows[-1].pos
        page = min(page * 2, PAGE_MAX)


async def scan(
    conn: Conn,
    room_id: str,
    access: RoomAccess,
    viewer: Viewer,
    filt: RoomEventFilter,
    *,
    after: int,
    before: int,
    limit: int,
    backwards: bool,
) -> tuple[list[q.TimelineEvent], bool]:
    """Up to ``limit`` wanted events at ``after < p < before``, walking from ``before``
    down (``backwards``) or from ``after`` up, in walking order; and whether another
    wanted event lies beyond the last one returned.
    """
    check = not access.everything_visible(after, before - 1)
    picked: list[q.TimelineEvent] = []
    pages = _pages(conn, room_id, viewer.fmt, after, before, limit + 1, backwards=backwards)
    async with aclosing(pages):
        async for rows in pages:
            for ev in rows:
                if _wanted(filt, viewer, access, ev, check):
                    if len(picked) == limit:
                        return picked, True
                    picked.append(ev)
    return picked, False
