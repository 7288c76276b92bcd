"""What the ``/sync`` requests of one storage read share: reads about rooms, served events.

When one event wakes many parked requests, they resume together and their gathers run in
one storage read (see :mod:`trio_sync.sync.batch`). Whatever in
them does not depend on the user is then computed once for all of them:

* a room's new events in a range (``after < p <= upto``), its newest page, whether it
  has forked history in a range, which events have bundled children: kept per room (or
  per event), so users whose room lists differ still share what their lists have in
  common; one statement reads everything the first request of the read lacks;
* a served event: the JSON text an event becomes for a viewer depends only on the
  viewer's format and fields, the age it is served with, the user's membership at the
  event and whether the viewer's device sent it; users who agree on those get the same
  text, serialised once.

A :class:`WakeShare` lives for one storage read; nothing in it outlives that read. What
it keeps is bounded by positions, as every query of the read is (it reads only what had
settled when those positions committed), so requests with different tokens share it.
Everything here runs inside the read (no checkpoint of Trio's own), and a read
abandoned half way leaves only this object behind, which is dropped with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..storage import Conn
from ..storage import relations as rel
from ..storage import rooms as q
from ..storage.visibility import RoomAccess, rooms_with_forks
from .timeline import Viewer

V = TypeVar("V")

#: Which of a served event's per-user parts apply: the ``unsigned.membership`` value (None
#: when not sent) and whether the viewer's device sent it (``unsigned.transaction_id``).
ServeKey = tuple[int, str, tuple[str, ...] | None, int, str | None, bool]


class WakeShare:
    """Memos of one storage read: see the module docstring."""

    __slots__ = ("_by_room", "_children", "_served")

    def __init__(self) -> None:
        self._by_room: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._children: dict[int, dict[str, bool]] = {}
        self._served: dict[ServeKey, str] = {}

    async def _per_room(
        self,
        key: tuple[Any, ...],
        rooms: Iterable[str],
        read: Callable[[list[str]], Awaitable[dict[str, V]]],
        missing_value: Callable[[], V],
    ) -> dict[str, V]:
        """``read(rooms)`` with the rooms already read under ``key`` taken from the memo;
        one call of ``read`` for the rest (none when nothing is missing)."""
        memo = self._by_room.setdefault(key, {})
        rooms = list(rooms)
        missing = [r for r in rooms if r not in memo]
        if missing:
            got = await read(missing)
            for room_id in missing:
                value = got.get(room_id)
                memo[room_id] = missing_value() if value is None else value
        return {r: memo[r] for r in rooms}

    async def events_in_range(
        self, conn: Conn, rooms: Sequence[str], after: int, upto: int, fmt: str
    ) -> dict[str, list[q.TimelineEvent]]:
        """:func:`q.events_in_range`: the rooms of ``rooms`` with events in the range."""

        async def read(missing: list[str]) -> dict[str, list[q.TimelineEvent]]:
            return await q.events_in_range(conn, missing, after, upto, fmt)

        got = await self._per_room(("range", after, upto, fmt), rooms, read, list)
        # Each request gets lists of its own (callers may reorder them).
        return {r: list(events) for r, events in got.items() if events}

    async def newest_pages(
        self,
        conn: Conn,
        rooms: Sequence[str],
        after: int,
        upto: int,
        limit: int,
        fmt: str,
        children_upto: int | None = None,
    ) -> dict[str, list[q.TimelineEvent]]:
        """:func:`q.newest_pages`, every room of ``rooms`` present. With ``children_upto``,
        which of the events read have children to bundle at ``p <= children_upto`` is read
        with them and noted for :meth:`parents_with_children`."""

        async def read(missing: list[str]) -> dict[str, list[q.TimelineEvent]]:
            if children_upto is None:
                return await q.newest_pages(conn, missing, after, upto, limit, fmt)
            pages, parents = await q.newest_pages_with_parents(
                conn, missing, after, upto, limit, fmt, children_upto
            )
            ids = (e.event_id for events in pages.values() for e in events)
            self.know_children(children_upto, ids, parents)
            return pages

        got = await self._per_room(("page", after, upto, limit, fmt), rooms, read, list)
        return {r: list(events) for r, events in got.items()}

    async def rooms_with_forks(
        self, conn: Conn, rooms: Iterable[str], after: int, upto: int
    ) -> set[str]:
        """:func:`rooms_with_forks`."""

        async def read(missing: list[str]) -> dict[str, bool]:
            forked = await rooms_with_forks(conn, missing, after, upto)
            return {r: r in forked for r in missing}

        got = await self._per_room(("forks", after, upto), rooms, read, bool)
        return {r for r, forked in got.items() if forked}

    async def parents_in_range(
        self, conn: Conn, rooms: Sequence[str], after: int, upto: int, children_upto: int
    ) -> set[str]:
        """:func:`rel.parents_in_range`, the parents of all ``rooms`` together."""

        async def read(missing: list[str]) -> dict[str, set[str]]:
            return await rel.parents_in_range(conn, missing, after, upto, children_upto)

        got = await self._per_room(("parents", after, upto, children_upto), rooms, read, set)
        return set().union(*got.values())

    def know_children(self, upto: int, event_ids: Iterable[str], parents: set[str]) -> None:
        """Record which of ``event_ids`` have children at ``p <= upto`` (``parents``: those
        that do), as :meth:`parents_with_children` would have read it."""
        memo = self._children.setdefault(upto, {})
        for event_id in event_ids:
            memo[event_id] = event_id in parents

    async def parents_with_children(
        self, conn: Conn, rooms: Sequence[str], parent_ids: Sequence[str], upto: int
    ) -> set[str]:
        """:func:`rel.parents_with_children` (``parent_ids`` are events of ``rooms``)."""
        memo = self._children.setdefault(upto, {})
        missing = [e for e in dict.fromkeys(parent_ids) if e not in memo]
        if missing:
            found = await rel.parents_with_children(conn, rooms, missing, upto)
            for event_id in missing:
                memo[event_id] = event_id in found
        return {e for e in parent_ids if memo[e]}

    def serve(
        self,
        viewer: Viewer,
        ev: q.TimelineEvent,
        access: RoomAccess | None,
        relations: dict[str, Any] | None = None,
    ) -> str:
        """:meth:`Viewer.serve`, serialised once for every viewer who gets the same text
        (events with bundled relations are served for each viewer alone)."""
        if relations:
            return viewer.serve(ev, access, relations)
        membership, own = viewer.unsigned_parts(ev, access)
        key = (ev.pos, viewer.fmt, viewer.fields, viewer.now_ms, membership, own)
        text = self._served.get(key)
        if text is None:
            text = self._served[key] = viewer.serve_as(ev, membership, own)
        return text
