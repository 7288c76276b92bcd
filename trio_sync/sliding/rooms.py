"""One room of a sliding sync response: timeline, required state and room fields.

Timelines are chosen by :func:`trio_sync.sync.timeline.select_recent` and served by the
same :class:`~trio_sync.sync.timeline.Viewer` as ``/sync`` (history visibility, ignored
users, ``unsigned``, redactions). Invites and knocks get their stripped state as ``/sync``
builds it.

A room the connection has not been sent is sent whole (``initial``). Otherwise its
timeline holds what came at ``sent_upto < p <= upto`` and its ``required_state`` what
changed there, plus entries the request newly asks for; a larger ``timeline_limit`` than
before resends the timeline from scratch (``expanded_timeline``). ``$LAZY`` sends the
member events of the timeline's senders and the user itself, once per connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from ..aggregations import bundles
from ..filters import RoomEventFilter
from ..storage import Array, Conn
from ..storage import relations as rel
from ..storage import rooms as q
from ..storage.rounds import Read, together
from ..storage.visibility import RoomAccess, load_access
from ..sync.streams.invites import invite_state
from ..sync.streams.pdu import knock_state
from ..sync.timeline import Viewer, first_page_size, prev_batch, select_recent
from ..tokens import StreamToken
from .request import RequiredState, RoomConfig
from .required_state import plan_update, remember_lazy
from .room_lists import Candidate
from .store import SentRoom

_PLAIN = RoomEventFilter()
#: The most rooms sent before that look for relations to bundle with their timeline.
SPECULATE_MAX = 4
_META_TYPES = ("m.room.name", "m.room.avatar", q.MEMBER)


@dataclass(frozen=True, slots=True)
class RoomPlan:
    """A room to send, with what the connection already has of it (None: nothing)."""

    candidate: Candidate
    config: RoomConfig
    sent: SentRoom | None
    bump: int


@dataclass(frozen=True, slots=True)
class SentState:
    """The state a client holds of a room: its effective config and lazy members."""

    required_state: RequiredState
    lazy_members: tuple[str, ...]


#: A room's chosen timeline events, the position they reach, and which events among
#: the newest have relations to bundle (when looked at with the timeline).
_Timeline = tuple[str, Sequence[q.TimelineEvent], int, rel.NewestParents | None]


@dataclass(frozen=True, slots=True)
class BuildScope:
    """Who the response is for and the positions it spans."""

    user_id: str
    viewer: Viewer
    since: StreamToken | None
    now: StreamToken
    direct: frozenset[str]


def _fragments(items: Sequence[str]) -> list[orjson.Fragment]:
    return [orjson.Fragment(s) for s in items]


def _stripped_name(stripped: Sequence[str]) -> str | None:
    for text in stripped:
        event = orjson.loads(text)
        if event.get("type") == "m.room.name":
            name = (event.get("content") or {}).get("name")
            if isinstance(name, str) and name:
                return name
    return None


async def _select_state(
    conn: Conn, room_id: str, at: int, rs: RequiredState, lazy: Sequence[str]
) -> list[q.StateEvent]:
    """The entries of the room's state at ``at`` that ``rs`` asks for, plus the member
    events of ``lazy``."""
    if not rs.pairs and not lazy:
        return []
    members = None if rs.all_members() else [*rs.members(), *lazy]
    types = rs.types()
    if types is not None and lazy and q.MEMBER not in types:
        types = [*types, q.MEMBER]
    rows = await q.state_at(conn, room_id, at, types=types, members=members)
    wanted = set(lazy)
    return [
        s
        for s in rows
        if rs.matches(s.type, s.state_key) or (s.type == q.MEMBER and s.state_key in wanted)
    ]


async def _required_state(
    conn: Conn,
    room_id: str,
    rs: RequiredState,
    sent: SentRoom | None,
    upto: int,
    lazy_users: list[str],
    delta: Sequence[q.StateEvent],
) -> tuple[list[q.StateEvent], SentState, bool]:
    """The state entries to send, what the client holds afterwards, and whether the
    room's name, avatar or members may have changed since it was last sent (see
    :mod:`.required_state`); ``delta`` is the room's state delta after ``sent``."""
    if sent is None:
        state = await _select_state(conn, room_id, upto, rs, lazy_users)
        return state, SentState(rs, remember_lazy(lazy_users, [])), True
    update = plan_update(sent.required_state, sent.lazy_members, rs, delta, lazy_users)
    entries = list(update.changed)
    if update.read.pairs or update.read_members:
        extra = await _select_state(conn, room_id, upto, update.read, update.read_members)
        had = sent.required_state
        entries += [
            s
            for s in extra
            if s.state_key in update.read_members or not had.matches(s.type, s.state_key)
        ]
    unique = {s.event_id: s for s in entries}
    moved = any(s.type in _META_TYPES for s in delta)
    return list(unique.values()), SentState(update.effective, update.lazy_members), moved


async def _unread(conn: Conn, user_id: str, room_ids: list[str]) -> dict[str, tuple[int, int]]:
    if not room_ids:
        return {}
    rows = await conn.fetch(
        "SELECT room_id, notification_count, highlight_count FROM unread_counts "
        "WHERE user_id = $1 AND thread_id = '' AND room_id = ANY($2)",
        user_id,
        Array(room_ids),
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def counts_changed(
    conn: Conn, user_id: str, plans: Sequence[RoomPlan], upto: int
) -> list[RoomPlan]:
    """The plans whose room had its notification counts written (set by the log, or
    cleared by a read receipt) at ``sent.counts_at < p <= upto``."""
    after = min(p.sent.counts_at for p in plans if p.sent is not None)
    rows = await conn.fetch(
        "SELECT room_id, MAX(pos) FROM unread_counts WHERE user_id = $1 AND pos > $2 "
        "AND pos <= $3 AND room_id = ANY($4) GROUP BY room_id",
        user_id,
        after,
        upto,
        Array([p.candidate.room_id for p in plans]),
    )
    written = {str(r[0]): int(r[1]) for r in rows}
    return [
        p
        for p in plans
        if p.sent is not None and written.get(p.candidate.room_id, 0) > p.sent.counts_at
    ]


def _meta(state: list[q.StateEvent], heroes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    profiles: dict[str, dict[str, Any]] = {}
    for s in state:
        content = orjson.loads(s.json).get("content") or {}
        if s.type == "m.room.name" and isinstance(content.get("name"), str) and content["name"]:
            out["name"] = content["name"]
        elif s.type == "m.room.avatar" and isinstance(content.get("url"), str):
            out["avatar"] = content["url"]
        elif s.type == q.MEMBER:
            profiles[s.state_key] = content
    listed = []
    for user in heroes:
        hero: dict[str, Any] = {"user_id": user}
        profile = profiles.get(user, {})
        if isinstance(profile.get("displayname"), str):
            hero["displayname"] = profile["displayname"]
        if isinstance(profile.get("avatar_url"), str):
            hero["avatar_url"] = profile["avatar_url"]
        listed.append(hero)
    if listed:
        out["heroes"] = listed
    return out


@dataclass(slots=True)
class _Shared:
    """What every room of one :func:`build_rooms` reads from: read for all at once, in
    the first round of the rooms' own reads (:meth:`ready` waits for it)."""

    access: dict[str, RoomAccess]
    summaries: Mapping[str, q.Summary] = field(default_factory=dict)
    unread: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    done: bool = False

    async def ready(self, conn: Conn) -> _Shared:
        """Once read: this (a room waits rounds without queries of its own till then)."""
        while not self.done:
            await conn.fetch_many([])
        return self

    async def read(
        self,
        conn: Conn,
        user_id: str,
        now: int,
        unknown: list[str],
        fresh: list[str],
        joined: list[str],
    ) -> None:
        """Read the access of ``unknown`` rooms, the summaries of ``fresh`` ones and the
        notification counts of ``joined`` ones, as of ``now``."""
        access, self.summaries, self.unread = await together(
            conn,
            [
                partial(load_access, user_id=user_id, room_ids=unknown, upto=now),
                partial(q.room_summaries, room_ids=fresh, at=now, user_id=user_id),
                partial(_unread, user_id=user_id, room_ids=joined),
            ],
        )
        self.access.update(access)
        self.done = True


async def build_rooms(
    conn: Conn, scope: BuildScope, plans: Sequence[RoomPlan]
) -> tuple[dict[str, dict[str, Any]], dict[str, SentRoom]]:
    """The ``rooms`` entries for ``plans`` and what the connection has of each afterwards.

    The rooms are built together (:func:`~trio_sync.storage.rounds.together`): on
    PostgreSQL the n-th query of every room shares one round trip."""
    now = scope.now.pdu
    inside = [p for p in plans if p.candidate.membership in ("join", "leave", "ban")]
    # A room the user was joined to all through what the timeline may show (it was sent
    # already, after the join): every event there is visible, no rows are needed to judge.
    steady = {
        p.candidate.room_id: RoomAccess.joined_from(scope.user_id, p.candidate.since)
        for p in inside
        if p.candidate.membership == "join"
        and p.sent is not None
        and p.sent.sent_upto >= p.candidate.since
        and p.config.timeline_limit <= p.sent.timeline_limit
    }
    joined = [p.candidate.room_id for p in inside if p.candidate.membership == "join"]
    # Rooms sent for the first time need their summary.
    fresh = [
        p.candidate.room_id for p in inside if p.sent is None and p.candidate.membership == "join"
    ]
    # On PostgreSQL, rooms sent before (a narrow range of new events) ask which of their
    # newest events have relations to bundle with their timeline, saving the relations
    # query after it; not for many rooms, where the planning of those queries would
    # cost more than the round trip saved.
    speculate = (
        conn.dialect == "postgres" and sum(1 for p in plans if p.sent is not None) <= SPECULATE_MAX
    )
    # The rooms' first queries go with the shared reads: a steady room needs nothing
    # of them before its timeline and state delta.
    shared = _Shared(steady)
    unknown = [p.candidate.room_id for p in inside if p.candidate.room_id not in steady]
    _, *built = await together(
        conn,
        [
            partial(
                shared.read,
                user_id=scope.user_id,
                now=now,
                unknown=unknown,
                fresh=fresh,
                joined=joined,
            ),
            *(
                partial(_room, scope=scope, plan=p, shared=shared, speculate=speculate)
                for p in plans
            ),
        ],
    )
    access = shared.access
    out: dict[str, dict[str, Any]] = {}
    sent_now: dict[str, SentRoom] = {}
    timelines: list[_Timeline] = []
    for plan, (room, sent, timeline) in zip(plans, built, strict=True):
        out[plan.candidate.room_id] = room
        sent_now[plan.candidate.room_id] = sent
        if timeline is not None:
            timelines.append(timeline)
    await _serve_timelines(conn, scope, access, timelines, out)
    return out, sent_now


async def _room(
    conn: Conn, scope: BuildScope, plan: RoomPlan, shared: _Shared, speculate: bool
) -> tuple[dict[str, Any], SentRoom, _Timeline | None]:
    """One room's entry (its timeline not yet served), what the connection has of it
    afterwards, and the timeline to serve (none for an invite or a knock)."""
    c = plan.candidate
    counts_at = scope.now.notification
    room: dict[str, Any] = {"membership": c.membership, "bump_stamp": plan.bump}
    if plan.sent is None:
        room["initial"] = True
    if c.room_id in scope.direct:
        room["is_dm"] = True
    if c.membership in ("invite", "knock"):
        if c.membership == "invite":
            stripped = invite_state(orjson.loads(c.invite_json)) if c.invite_json else []
            room["invite_state"] = _fragments(stripped)
        else:
            member = q.Membership(c.room_id, c.membership, c.event_id, c.since)
            stripped = await knock_state(conn, member)
            room["knock_state"] = _fragments(stripped)
        room["stripped_state"] = _fragments(stripped)
        name = _stripped_name(stripped)
        if name is not None:
            room["name"] = name
        return (
            room,
            SentRoom(c.since, plan.config.timeline_limit, RequiredState(), counts_at=counts_at),
            None,
        )
    upto = scope.now.pdu if c.membership == "join" else c.since
    sent, config = plan.sent, plan.config
    expanded = sent is not None and config.timeline_limit > sent.timeline_limit
    after = 0 if sent is None or expanded else sent.sent_upto
    if c.room_id not in shared.access:
        await shared.ready(conn)
    access = shared.access[c.room_id]
    recent = partial(
        select_recent,
        room_id=c.room_id,
        access=access,
        viewer=scope.viewer,
        filt=_PLAIN,
        after=after,
        upto=upto,
        limit=config.timeline_limit,
    )
    # Independent of the timeline: the state delta of a room sent before; the name,
    # avatar, heroes and member counts of a room sent for the first time.
    # With ``speculate``, which of the newest events have relations to bundle too.
    delta: Sequence[q.StateEvent] = ()
    meta: tuple[list[q.StateEvent], q.Summary] | None = None
    reads: list[Read] = [
        recent,
        partial(_meta_reads, room_id=c.room_id, upto=upto, scope=scope, shared=shared)
        if sent is None
        else partial(q.state_delta, room_id=c.room_id, after=sent.sent_upto, at=upto),
    ]
    if speculate and sent is not None:
        reads.append(
            partial(
                rel.parents_among_newest,
                room_id=c.room_id,
                after=after,
                upto=upto,
                newest=first_page_size(config.timeline_limit),
                children_upto=scope.now.pdu,
            )
        )
    chosen, other, *parents = await together(conn, reads)
    if sent is None:
        meta = other
    else:
        delta = other
    events = chosen.events
    rs = config.required_state.resolve(scope.user_id)
    lazy_users = (
        list(dict.fromkeys([*(e.sender for e in events), scope.user_id])) if rs.lazy else []
    )
    state, holds, moved = await _required_state(conn, c.room_id, rs, sent, upto, lazy_users, delta)
    if meta is None and (moved or expanded):
        meta = await _meta_reads(conn, c.room_id, upto, scope, shared)
    if meta is not None:
        # Name, avatar, heroes and member counts: sent the first time and whenever
        # they may have changed.
        meta_state, summary = meta
        room.update(_meta(meta_state, summary.heroes))
        room["joined_count"] = summary.joined
        room["invited_count"] = summary.invited
    since_pdu = scope.since.pdu if scope.since is not None else None
    room.update(
        {
            "required_state": _fragments([scope.viewer.serve_state(s.json) for s in state]),
            "prev_batch": prev_batch(events, upto, scope.now),
            "limited": chosen.limited,
            "num_live": 0 if since_pdu is None else sum(1 for e in events if e.pos > since_pdu),
        }
    )
    if expanded:
        room["expanded_timeline"] = True
    unread = (await shared.ready(conn)).unread
    room["notification_count"], room["highlight_count"] = unread.get(c.room_id, (0, 0))
    held = SentRoom(
        upto, config.timeline_limit, holds.required_state, holds.lazy_members, counts_at
    )
    return room, held, (c.room_id, events, upto, parents[0] if parents else None)


async def _meta_reads(
    conn: Conn, room_id: str, upto: int, scope: BuildScope, shared: _Shared
) -> tuple[list[q.StateEvent], q.Summary]:
    """The room's summary and the state its name, avatar and heroes come from."""
    summary = (await shared.ready(conn)).summaries.get(room_id) or await q.room_summary(
        conn, room_id, upto, scope.user_id
    )
    state = await q.state_at(conn, room_id, upto, types=_META_TYPES, members=summary.heroes)
    return state, summary


async def _serve_timelines(
    conn: Conn,
    scope: BuildScope,
    access: Mapping[str, RoomAccess],
    timelines: Sequence[_Timeline],
    out: dict[str, dict[str, Any]],
) -> None:
    """Serve each room's chosen timeline events into ``out[room]["timeline"]``, with the
    bundled aggregations ``/sync`` gives them. Which events have relations to bundle is
    known for rooms whose timeline lies among the newest events looked at with it; one
    query finds them for the other rooms. Only rooms with such events read their
    bundles."""
    with_children: set[str] = set()
    unknown = []
    for room_id, events, _, known in timelines:
        if known is not None and known.cover([e.pos for e in events]):
            with_children |= known.parents
        else:
            unknown.append((room_id, events))
    with_children |= await rel.parents_with_children(
        conn,
        [room_id for room_id, _ in unknown],
        [e.event_id for _, events in unknown for e in events],
        scope.now.pdu,
    )
    for room_id, events, upto, _ in timelines:
        bundled = (
            await bundles(conn, scope.viewer, access[room_id], room_id, events, upto)
            if any(e.event_id in with_children for e in events)
            else {}
        )
        out[room_id]["timeline"] = _fragments(
            [scope.viewer.serve(e, access[room_id], bundled.get(e.event_id)) for e in events]
        )
