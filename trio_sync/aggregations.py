"""Bundled aggregations: the ``unsigned.m.relations`` of served events, per user.

For a page of events (a ``/sync`` timeline, a ``/messages`` chunk, a ``/context`` window,
one ``/event``) the children of all of them are read in one query from the relations
index (:mod:`trio_sync.storage.relations`), then judged for the requesting user: a child
counts only when the user may see it (history visibility) and its sender is not one the
user ignores (the user's own events always count). What is bundled (spec, "Aggregations
of child events"):

* ``m.replace``: the most recent valid edit (greatest ``origin_server_ts``, then event
  ID), served whole. Valid: same sender and type as the original, neither a state event,
  the original not itself an edit, and ``m.new_content`` present (unless the edit is
  encrypted). Nothing when the original is redacted.
* ``m.thread``: ``latest_event`` (the newest reply, served whole with its own bundled
  aggregations), ``count`` and ``current_user_participated`` (the user sent the root or a
  reply).
* ``m.reference``: ``chunk`` of ``{"event_id"}``, oldest first.

A redacted child has no relation left (its row was dropped at redaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .storage import Conn
from .storage import relations as rel
from .storage import rooms as q
from .storage.visibility import RoomAccess
from .sync.timeline import Viewer

#: Bundles of one page: event ID → its ``m.relations`` object (only events that have one).
Bundles = dict[str, dict[str, Any]]


@dataclass(slots=True)
class _Plan:
    """What one parent's bundle holds, before the chosen events are read."""

    replace: rel.Child | None = None
    latest: rel.Child | None = None
    count: int = 0
    participated: bool = False
    references: list[str] = field(default_factory=list)


def counts_for(viewer: Viewer, access: RoomAccess, child: rel.Child) -> bool:
    """Whether ``child`` may count in an aggregation served to ``viewer``."""
    if child.sender in viewer.ignored and child.sender != viewer.user_id:
        return False
    return access.visible(child.pos, child.type, child.state_key)


def valid_edit(parent: rel.Parent, child: rel.Child) -> bool:
    """The spec's rules for a replacement (``m.replace``) of ``parent`` by ``child``."""
    return (
        not parent.redacted
        and parent.rel_type != rel.REPLACE
        and child.sender == parent.sender
        and child.type == parent.type
        and child.state_key is None
        and parent.state_key is None
        and (child.new_content or child.type == "m.room.encrypted")
    )


def _plan(
    viewer: Viewer, access: RoomAccess, kids: Sequence[rel.Child], parents: dict[str, rel.Parent]
) -> dict[str, _Plan]:
    plans: dict[str, _Plan] = {}
    for child in kids:
        if not counts_for(viewer, access, child):
            continue
        parent = parents[child.parent_id]
        plan = plans.setdefault(child.parent_id, _Plan())
        if child.rel_type == rel.REPLACE:
            if valid_edit(parent, child) and (
                plan.replace is None
                or (child.origin_server_ts, child.event_id)
                > (plan.replace.origin_server_ts, plan.replace.event_id)
            ):
                plan.replace = child
        elif child.rel_type == rel.THREAD:
            plan.latest = child
            plan.count += 1
            plan.participated |= child.sender == viewer.user_id or parent.sender == viewer.user_id
        elif child.rel_type == rel.REFERENCE:
            plan.references.append(child.event_id)
    return plans


@dataclass(frozen=True, slots=True)
class Planned:
    """What the bundles of some parents hold for one user, before anything is served."""

    plans: dict[str, _Plan]

    def latest_reply(self, parent_id: str) -> rel.Child | None:
        """The newest reply of the thread rooted at ``parent_id`` that counts for the
        user (the bundle's ``latest_event``), if any."""
        plan = self.plans.get(parent_id)
        return None if plan is None else plan.latest

    def participated(self, parent_id: str) -> bool:
        """The bundle's ``current_user_participated`` (False without a counting reply)."""
        plan = self.plans.get(parent_id)
        return plan is not None and plan.participated


async def plan_bundles(
    conn: Conn,
    viewer: Viewer,
    access: RoomAccess,
    room_id: str,
    parent_ids: Sequence[str],
    upto: int,
) -> Planned:
    """The bundles of ``parent_ids`` (of ``room_id``) for ``viewer``, counting children at
    ``p <= upto``, as plans: one query. Read-only."""
    if not parent_ids or viewer.fmt == "federation":
        return Planned({})
    kids, parents = await rel.children(conn, room_id, parent_ids, upto)
    return Planned(_plan(viewer, access, kids, parents) if kids else {})


async def serve_bundles(
    conn: Conn,
    viewer: Viewer,
    access: RoomAccess,
    room_id: str,
    planned: Planned,
    upto: int,
    *,
    nested: bool = True,
) -> Bundles:
    """The ``m.relations`` objects of planned bundles: one query to read the edits and
    latest replies chosen, and (``nested``) the latest replies' own bundles. Read-only."""
    plans = planned.plans
    if not plans:
        return {}
    wanted = [c.event_id for p in plans.values() for c in (p.replace, p.latest) if c is not None]
    fetched = await q.events_by_ids(conn, room_id, wanted, viewer.fmt)
    latest = [fetched[p.latest.event_id] for p in plans.values() if p.latest is not None]
    inner: Bundles = {}
    if nested and latest:
        inner = await bundles(conn, viewer, access, room_id, latest, upto, nested=False)
    out: Bundles = {}
    for parent_id, plan in plans.items():
        bundle: dict[str, Any] = {}
        if plan.replace is not None:
            bundle[rel.REPLACE] = orjson.loads(viewer.serve(fetched[plan.replace.event_id], access))
        if plan.latest is not None:
            ev = fetched[plan.latest.event_id]
            bundle[rel.THREAD] = {
                "latest_event": orjson.loads(viewer.serve(ev, access, inner.get(ev.event_id))),
                "count": plan.count,
                "current_user_participated": plan.participated,
            }
        if plan.references:
            bundle[rel.REFERENCE] = {"chunk": [{"event_id": i} for i in plan.references]}
        if bundle:
            out[parent_id] = bundle
    return out


async def bundles(
    conn: Conn,
    viewer: Viewer,
    access: RoomAccess,
    room_id: str,
    events: Sequence[q.TimelineEvent],
    upto: int,
    *,
    nested: bool = True,
) -> Bundles:
    """The bundled aggregations of ``events`` (of ``room_id``) for ``viewer``, counting
    children at ``p <= upto``. One query when none of them has children; one more to read
    the edits and latest replies chosen, and (``nested``) the same again for the latest
    replies' own bundles. Read-only; cancellation leaves nothing behind."""
    planned = await plan_bundles(conn, viewer, access, room_id, [e.event_id for e in events], upto)
    return await serve_bundles(conn, viewer, access, room_id, planned, upto, nested=nested)
