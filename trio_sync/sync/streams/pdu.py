"""The PDU stream: joined, left and knocked rooms, their timelines, state and summaries.

Which rooms (after Synapse's and Dendrite's sync servers):
* complete: every room the user is joined to (or has knocked on) at ``now``; left and
  banned rooms only with ``include_leave``;
* incremental: rooms whose membership of the user changed in ``since < p <= now``
  (newly joined → full state; left or banned → ``rooms.leave`` with the timeline up to
  the leave and nothing after it), plus joined rooms with new events.

The timeline holds the newest events the user may see (history visibility) and the
filter admits; ``limited`` is true exactly when another such event lies between ``since``
(or the start of the room) and the timeline's first event. State is the state at the
start of the timeline: all of it for a complete sync, a newly joined room or
``full_state``; otherwise what changed between ``since`` and the start of the timeline.
With ``use_state_after`` it is the state at the end of the timeline instead. Repeated
joins and profile changes are changes, not new joins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import orjson

from ...aggregations import bundles
from ...storage import Conn
from ...storage import rooms as q
from ...storage.rounds import together
from ...storage.visibility import RoomAccess, load_access
from ...tokens import TopologyToken
from ..response import JoinedRoom, RoomTimeline, SyncContext, SyncResponse
from ..timeline import Selected, first_page_size, is_plain, prev_batch, scan, select_recent

#: Up to this many new events, read them all in one query and share them out by room.
READ_RANGE_MAX = 200
#: Up to this many, find the rooms with new events by one range scan; above it, ask each
#: joined room for its newest events (an index descent each).
RANGE_SCAN_MAX = 2000
_STRIPPED = ("content", "sender", "state_key", "type")


class JoinedRoomsDiffer(Exception):
    """The joined rooms of a complete sync's memberships are not those the handler had in
    memory (``ctx.joined``, now corrected): the response is to be gathered again."""


def _lazy_members(ctx: SyncContext, timeline: Sequence[q.TimelineEvent]) -> list[str] | None:
    """The members whose state a lazy-loading client needs for ``timeline`` (its senders
    and the user itself), or None when the client does not lazy-load."""
    if not ctx.filter.room.state.lazy_load_members:
        return None
    return list(dict.fromkeys([*(e.sender for e in timeline), ctx.user_id]))


async def room_section(
    conn: Conn,
    ctx: SyncContext,
    room_id: str,
    access: RoomAccess,
    *,
    after: int,
    upto: int,
    full_state: bool,
    in_range: list[q.TimelineEvent] | None = None,
    summary: q.Summary | None = None,
    changes: q.StateChanges | None = None,
    chosen: Selected | None = None,
    state_rows: list[q.StateEvent] | None = None,
    member_rows: list[q.StateEvent] | None = None,
    state_members: Sequence[str] | None = None,
    with_children: set[str] | None = None,
) -> JoinedRoom:
    """Timeline of events at ``after < p <= upto`` (newest ``limit`` the user may see) and
    the state that goes with it.

    ``in_range`` is every syncable event of the room in that range, when the caller has
    already read them; ``summary`` the room's summary at ``upto``, when it has read that;
    ``changes`` the room's state changes since ``after``, when it has read those;
    ``chosen`` the timeline, when the caller has chosen it; ``state_rows`` the whole
    state at the timeline's start (or end, with ``state_after``) for a ``full_state``
    section, when the caller has read it: with lazy loading, its member entries only
    those of the users ``state_members`` (at least :func:`_lazy_members`);
    ``member_rows`` (lazy loading, without full state) the member entries of the users
    ``state_members`` at that place, when the caller has read them.
    """
    viewer = ctx.viewer
    limit = ctx.filter.timeline_limit(10)
    if chosen is None:
        chosen = await select_recent(
            conn,
            room_id,
            access,
            viewer,
            ctx.filter.room.timeline,
            after=after,
            upto=upto,
            limit=limit,
            preread=in_range,
        )
    events, limited = chosen.events, chosen.limited
    before = (events[0].pos if events else upto + 1) - 1
    members_changed = full_state or any(e.type == q.MEMBER for e in events)
    heroes: list[str] = []
    fmt = viewer.fmt
    lazy = _lazy_members(ctx, events)
    state_upto = upto if ctx.state_after else before
    #: Member entries at ``state_upto`` already read, and the users they were read for.
    read: tuple[list[q.StateEvent], set[str]] | None = None
    if member_rows is not None and state_members is not None:
        read = member_rows, set(state_members)
    if full_state and state_rows is not None and lazy is None:
        state = state_rows
    elif full_state and state_rows is not None and state_members is not None:
        keep = set(lazy or ())
        state = [s for s in state_rows if s.type != q.MEMBER or s.state_key in keep]
        read = [s for s in state_rows if s.type == q.MEMBER], set(state_members)
    elif full_state:
        state = await q.state_at(conn, room_id, state_upto, fmt, members=lazy)
    elif ctx.state_after or chosen.gap:
        # Lazy loading still sends every membership change in the gap (spec).
        if changes is not None and changes.after == after:
            state = changes.delta(room_id, state_upto)
        else:
            state = await q.state_delta(conn, room_id, after, state_upto, fmt)
    else:
        state = []
    if chosen.hidden_within and not ctx.state_after:
        state += await _hidden_changes(conn, ctx, room_id, events, before, upto, lazy)
    if state and any(s.type == q.MEMBER for s in state):
        members_changed = True
    if not members_changed:
        summary = None
    elif summary is None:
        summary = await q.room_summary(conn, room_id, upto, ctx.user_id)
    if summary is not None:
        heroes = summary.heroes
    if lazy is not None:
        state = await _with_lazy_members(
            conn, ctx, room_id, state, events, heroes, state_upto, read
        )
    in_timeline = {e.event_id for e in events} if not ctx.state_after else set()
    sfilter = ctx.filter.room.state
    plain = is_plain(sfilter)
    served_state = [
        viewer.serve_state(s.json)
        for s in state
        if s.event_id not in in_timeline
        and (plain or sfilter.matches({"type": s.type, "sender": s.sender}))
    ]
    if sfilter.limit is not None:
        served_state = served_state[: sfilter.limit]
    bundled = (
        await bundles(conn, viewer, access, room_id, events, ctx.now.pdu)
        if with_children is None or any(e.event_id in with_children for e in events)
        else {}
    )
    served = [ctx.shared.serve(viewer, e, access, bundled.get(e.event_id)) for e in events]
    return JoinedRoom(
        timeline=RoomTimeline(served, limited, prev_batch(events, upto, ctx.now)),
        state=served_state,
        state_field=ctx.state_field,
        summary=summary.to_json() if summary is not None else None,
    )


async def joined_sections(
    conn: Conn,
    ctx: SyncContext,
    rooms: Sequence[str],
    access: Mapping[str, RoomAccess],
    *,
    after: int,
    upto: int,
    full_state: bool,
    in_range: Mapping[str, list[q.TimelineEvent]] | None = None,
    summaries: Mapping[str, q.Summary] | None = None,
    changes: q.StateChanges | None = None,
    pages: Mapping[str, list[q.TimelineEvent]] | None = None,
) -> dict[str, JoinedRoom]:
    """:func:`room_section` for each of ``rooms`` over the same range, reading the first
    timeline page of every room in one statement and, for ``full_state`` without lazy
    loading, every room's state in one more: the statements do not grow with the number
    of rooms. Rooms whose first page holds too few wanted events (filters, ignored users)
    or whose history the user may only partly see read more pages of their own.

    ``pages`` are first pages (:func:`first_page_size`) the caller read before it knew
    ``access``: they are used for the rooms whose range the user may see whole, and the
    others read their own as if they had not been given."""
    viewer = ctx.viewer
    limit = ctx.filter.timeline_limit(10)
    tfilt = ctx.filter.room.timeline
    preread = in_range or {}
    whole = [r for r in rooms if r not in preread and access[r].everything_visible(after, upto)]
    given = pages or {}
    pages = {r: given[r] for r in whole if r in given}
    unread = [r for r in whole if r not in pages]
    if unread:
        pages.update(
            await ctx.shared.newest_pages(
                conn, unread, after, upto, first_page_size(limit), viewer.fmt
            )
        )
    chosen: dict[str, Selected] = {}
    for room_id in rooms:
        chosen[room_id] = await select_recent(
            conn,
            room_id,
            access[room_id],
            viewer,
            tfilt,
            after=after,
            upto=upto,
            limit=limit,
            preread=preread.get(room_id),
            first_page=pages.get(room_id),
        )
    points: dict[str, int] = {}
    members: dict[str, list[str]] | None = None
    lazy = ctx.filter.room.state.lazy_load_members
    if full_state or lazy:
        for room_id, c in chosen.items():
            start = (c.events[0].pos if c.events else upto + 1) - 1
            points[room_id] = upto if ctx.state_after else start
        if lazy:
            # The members a lazy-loading section may send: its timeline's senders, the
            # user and, when the summary is known already, the heroes. Without full state
            # only their member entries are read.
            members = {
                r: _wanted_members(ctx, c.events, (summaries or {}).get(r))
                for r, c in chosen.items()
            }
    # Rooms whose section is the state that changed since ``after`` (a timeline that left
    # events out before it, or ``state_after``): their changes, read for all at once.
    delta_rooms = (
        [r for r, c in chosen.items() if ctx.state_after or c.gap]
        if not full_state and changes is None
        else []
    )
    # The state at those points and which timeline events have relations to bundle, for
    # all rooms at once (a room whose events have none then costs no aggregation query).
    states, with_children, read_changes = await together(
        conn,
        [
            partial(
                q.states_at,
                points=points,
                fmt=viewer.fmt,
                members=members,
                members_only=not full_state,
            ),
            partial(
                ctx.shared.parents_with_children,
                rooms=rooms,
                parent_ids=[e.event_id for c in chosen.values() for e in c.events],
                upto=ctx.now.pdu,
            ),
            partial(_changes_of, rooms=delta_rooms, after=after, upto=upto, fmt=viewer.fmt),
        ],
    )
    if read_changes is not None:
        changes = read_changes
    # The summaries of the rooms whose members changed, as :func:`room_section` would see
    # it from their timeline and state changes, for all of them at once.
    summaries = dict(summaries or {})
    changed = [
        r
        for r in rooms
        if r not in summaries
        and _members_changed(
            ctx, r, chosen[r], after=after, upto=upto, full_state=full_state, changes=changes
        )
    ]
    if changed:
        summaries.update(await q.room_summaries(conn, changed, upto, ctx.user_id))
    out = {}
    for room_id in rooms:
        out[room_id] = await room_section(
            conn,
            ctx,
            room_id,
            access[room_id],
            after=after,
            upto=upto,
            full_state=full_state,
            in_range=preread.get(room_id),
            summary=summaries.get(room_id),
            changes=changes,
            chosen=chosen[room_id],
            state_rows=states.get(room_id) if full_state else None,
            member_rows=None if full_state else states.get(room_id),
            state_members=None if members is None else members[room_id],
            with_children=with_children,
        )
    return out


def _members_changed(
    ctx: SyncContext,
    room_id: str,
    chosen: Selected,
    *,
    after: int,
    upto: int,
    full_state: bool,
    changes: q.StateChanges | None,
) -> bool:
    """Whether :func:`room_section` will find the room's members changed, judged as it
    judges from the timeline and the state changes before it (a room whose timeline
    hides events may also find out from those, in :func:`room_section` itself)."""
    events = chosen.events
    if full_state or any(e.type == q.MEMBER for e in events):
        return True
    if not (ctx.state_after or chosen.gap) or changes is None or changes.after != after:
        return False
    at = upto if ctx.state_after else (events[0].pos if events else upto + 1) - 1
    return any(s.type == q.MEMBER for s in changes.delta(room_id, at))


async def _changes_of(
    conn: Conn, rooms: Sequence[str], after: int, upto: int, fmt: str
) -> q.StateChanges | None:
    """:func:`q.state_changes` of ``rooms``; None, and no query, for no rooms."""
    return await q.state_changes(conn, rooms, after, upto, fmt) if rooms else None


def _wanted_members(
    ctx: SyncContext, timeline: Sequence[q.TimelineEvent], summary: q.Summary | None
) -> list[str]:
    """Whose member events a lazy-loading section of ``timeline`` may send: those of
    :func:`_lazy_members` and the heroes of ``summary`` (see :func:`_with_lazy_members`)."""
    wanted = dict.fromkeys(_lazy_members(ctx, timeline) or ())
    if summary is not None:
        wanted.update(dict.fromkeys(summary.heroes))
    return list(wanted)


async def _hidden_changes(
    conn: Conn,
    ctx: SyncContext,
    room_id: str,
    events: Sequence[q.TimelineEvent],
    before: int,
    upto: int,
    lazy: list[str] | None,
) -> list[q.StateEvent]:
    """State changed inside the timeline's span by events it leaves out (hidden by history
    visibility or the filter), for keys no timeline event sets: without them a client would
    never learn of them."""
    in_timeline = {(e.type, e.state_key) for e in events if e.state_key is not None}
    changes = await q.state_delta(conn, room_id, before, upto, ctx.viewer.fmt, members=lazy)
    return [s for s in changes if (s.type, s.state_key) not in in_timeline]


async def _with_lazy_members(
    conn: Conn,
    ctx: SyncContext,
    room_id: str,
    state: list[q.StateEvent],
    events: Sequence[q.TimelineEvent],
    heroes: Sequence[str],
    at: int,
    read: tuple[list[q.StateEvent], set[str]] | None = None,
) -> list[q.StateEvent]:
    """Add the member events of timeline senders and heroes that this device has not been
    sent yet (all of them with ``include_redundant_members``), and remember what was sent.
    ``read`` is the member entries at ``at`` of a set of users, when the caller has read
    them: users of that set are looked up there instead of in storage.
    """
    wanted = dict.fromkeys(e.sender for e in events)
    wanted.update(dict.fromkeys(heroes))
    wanted[ctx.user_id] = None
    have = {s.state_key for s in state if s.type == q.MEMBER}
    missing = [u for u in wanted if u not in have]
    sent = ctx.sent_members.setdefault(room_id, {}) if ctx.sent_members is not None else {}
    redundant = ctx.filter.room.state.include_redundant_members
    since = ctx.since.pdu if ctx.since is not None else -1
    if missing:
        if read is not None and read[1].issuperset(missing):
            wanted_rows = set(missing)
            found = [s for s in read[0] if s.state_key in wanted_rows]
        else:
            found = await q.state_at(
                conn, room_id, at, ctx.viewer.fmt, types=[q.MEMBER], members=missing
            )
        for s in found:
            known = sent.get(s.state_key)
            if redundant or known is None or known[0] != s.event_id or known[1] > since:
                state.append(s)
    for s in state:
        if s.type == q.MEMBER:
            known = sent.get(s.state_key)
            if known is None or known[0] != s.event_id:
                sent[s.state_key] = (s.event_id, ctx.now.pdu)
    return state


async def _ever_joined_before(conn: Conn, user_id: str, room_id: str, before: int) -> bool:
    row = await conn.fetchrow(
        "SELECT 1 FROM room_state WHERE state_key = $1 AND type = $2 AND room_id = $3 "
        "AND membership = 'join' AND added_at < $4 LIMIT 1",
        user_id,
        q.MEMBER,
        room_id,
        before,
    )
    return row is not None


async def _own_event(conn: Conn, event_id: str) -> str | None:
    """The stored PDU of ``event_id`` (its ``unsigned`` as the room server sent it)."""
    row = await conn.fetchrow("SELECT pdu_json FROM events WHERE event_id = $1", event_id)
    return None if row is None else str(row[0])


async def _own_leave(
    conn: Conn, ctx: SyncContext, access: RoomAccess, m: q.Membership, after: int
) -> JoinedRoom:
    """A left room the user never saw from inside: only its own membership event.

    ``prev_batch`` is the place just before that event, so paginating from it never gives
    the event again; ``limited`` says whether an event the user may see (and the filter
    admits) lies at ``after < p`` before it.
    """
    found = await q.event_by_id(conn, m.event_id, ctx.viewer.fmt, outliers=True)
    if found is None:
        return JoinedRoom(RoomTimeline([], False, str(ctx.now)), [], ctx.state_field)
    ev = found[1]
    floor = access.earliest_visible()
    earlier: list[q.TimelineEvent] = []
    if floor is not None and max(after, floor - 1) < ev.pos - 1:
        earlier, _ = await scan(
            conn,
            m.room_id,
            access,
            ctx.viewer,
            ctx.filter.room.timeline,
            after=max(after, floor - 1),
            before=ev.pos,
            limit=1,
            backwards=True,
        )
    timeline = RoomTimeline(
        [ctx.viewer.serve(ev, access)], bool(earlier), str(TopologyToken(ev.depth, ev.pos))
    )
    return JoinedRoom(timeline, [], ctx.state_field)


async def knock_state(conn: Conn, m: q.Membership) -> list[str]:
    """The stripped state a client shows for a knock, the knock itself last: what the
    knock's PDU carries in ``unsigned.knock_room_state``, else the room's state."""
    own = await _own_event(conn, m.event_id)
    event = orjson.loads(own) if own is not None else {}
    given = event.get("unsigned", {}).get("knock_room_state")
    if isinstance(given, list):
        stripped = [s for s in given if isinstance(s, dict)]
    else:
        state = await q.state_at(conn, m.room_id, m.since - 1, types=q.STRIPPED_TYPES)
        stripped = [orjson.loads(s.json) for s in state]
    out = [
        orjson.dumps({k: s[k] for k in _STRIPPED if k in s}).decode()
        for s in stripped
        if not (s.get("type") == q.MEMBER and s.get("state_key") == event.get("state_key"))
    ]
    if event:
        out.append(orjson.dumps({k: event[k] for k in _STRIPPED if k in event}).decode())
    return out


class PduStream:
    """Rooms the user is or was in, from the room event stream."""

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        """Every room of the user at ``now``. The rooms the handler found joined in memory
        (``ctx.joined``) have their access, summaries and first timeline pages read in the
        same round as the memberships that confirm them. Raises :class:`JoinedRoomsDiffer`
        (with ``ctx.joined`` set to what the memberships say) when they do not: the other
        streams relied on ``ctx.joined`` too, so the whole response is to be read again."""
        now = ctx.now.pdu
        allows = ctx.filter.room.allows_room
        guess = ctx.joined or []
        page = first_page_size(ctx.filter.timeline_limit(10))
        # Which events of the first pages have relations to bundle is read with them: for
        # a room whose timeline comes from its first page, only its state is left to read.
        found, access, summaries, pages = await together(
            conn,
            [
                partial(q.memberships_at, user_id=ctx.user_id, at=now),
                partial(load_access, user_id=ctx.user_id, room_ids=guess, upto=now),
                partial(q.room_summaries, room_ids=guess, at=now, user_id=ctx.user_id),
                partial(
                    ctx.shared.newest_pages,
                    rooms=guess,
                    after=0,
                    upto=now,
                    limit=page,
                    fmt=ctx.viewer.fmt,
                    children_upto=ctx.now.pdu,
                ),
            ],
        )
        mine = {r: m for r, m in found.items() if allows(r)}
        if not ctx.filter.room.include_leave:
            mine = {r: m for r, m in mine.items() if m.membership not in ("leave", "ban")}
        joined = [r for r, m in mine.items() if m.membership == "join"]
        if set(joined) != set(guess):
            ctx.joined = sorted(joined)
            raise JoinedRoomsDiffer
        left = [r for r, m in mine.items() if m.membership in ("leave", "ban")]
        if left:
            access.update(await load_access(conn, ctx.user_id, left, now))
        sections = await joined_sections(
            conn,
            ctx,
            joined,
            access,
            after=0,
            upto=now,
            full_state=True,
            summaries=summaries,
            pages=pages,
        )
        for room_id, m in mine.items():
            if m.membership == "join":
                resp.put_joined(room_id, sections[room_id])
            elif m.membership == "knock":
                resp.knock[room_id] = await knock_state(conn, m)
            elif m.membership in ("leave", "ban"):
                if await _ever_joined_before(conn, ctx.user_id, room_id, m.since):
                    resp.leave[room_id] = await room_section(
                        conn, ctx, room_id, access[room_id], after=0, upto=m.since, full_state=True
                    )
                else:
                    resp.leave[room_id] = await _own_leave(conn, ctx, access[room_id], m, 0)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        since, now = ctx.since.pdu, ctx.now.pdu
        if now <= since and not ctx.full_state:
            return
        allows = ctx.filter.room.allows_room
        changes: dict[str, list[q.Membership]] = {}
        if ctx.memberships_quiet and ctx.joined is not None:
            # The notifier saw no membership change of the user since ``since``: its rooms
            # are those it has been joined to all along (no query needed).
            joined = list(ctx.joined)
            joined_since = dict.fromkeys(joined, since)
        else:
            current, changed = await q.memberships_now_and_since(conn, ctx.user_id, since, now)
            for change in changed:
                if allows(change.room_id):
                    changes.setdefault(change.room_id, []).append(change)
            moved = {c.room_id for c in changed}
            joined = [
                r
                for r, m in current.items()
                if m.membership == "join" and r not in moved and allows(r)
            ]
            joined_since = {r: current[r].since for r in joined}
        in_range: dict[str, list[q.TimelineEvent]] = {}
        if ctx.full_state:
            active = set(joined)
        elif not joined:
            active = set()
        elif now - since <= READ_RANGE_MAX:
            # With the range's events, what the rooms serving them will ask next: which
            # rooms have forked events there, and which events have relations to bundle.
            in_range, _, parents = await together(
                conn,
                [
                    partial(
                        ctx.shared.events_in_range,
                        rooms=joined,
                        after=since,
                        upto=now,
                        fmt=ctx.viewer.fmt,
                    ),
                    partial(ctx.shared.rooms_with_forks, rooms=joined, after=since, upto=now),
                    partial(
                        ctx.shared.parents_in_range,
                        rooms=joined,
                        after=since,
                        upto=now,
                        children_upto=ctx.now.pdu,
                    ),
                ],
            )
            ctx.shared.know_children(
                ctx.now.pdu, (e.event_id for events in in_range.values() for e in events), parents
            )
            active = set(in_range)
        elif now - since <= RANGE_SCAN_MAX:
            active = await q.rooms_with_events(conn, joined, since, now)
        else:
            active = set(joined)
        served = [r for r in joined if r in active]
        if not (changes or served):
            return
        # A room the user was already joined to at ``since`` shows it only events at which
        # it was joined: no visibility rows are needed to judge them.
        steady = {r for r in served if joined_since[r] <= since}
        if steady:
            # Events of forked histories are judged by their own state: those rooms do.
            steady -= await ctx.shared.rooms_with_forks(conn, steady, since, now)
        access = await load_access(
            conn, ctx.user_id, [*changes, *(r for r in served if r not in steady)], now
        )
        for room_id in steady:
            access[room_id] = RoomAccess.joined_from(ctx.user_id, joined_since[room_id])
        before = await q.memberships_at(conn, ctx.user_id, since) if changes else {}
        for room_id, seq in changes.items():
            await self._changed_room(conn, ctx, resp, access[room_id], before.get(room_id), seq)
        state_changes: q.StateChanges | None = None
        summaries: dict[str, q.Summary] = {}
        if now - since > RANGE_SCAN_MAX and not ctx.full_state and len(served) > 1:
            # A long gap: most rooms' timelines are limited and need the state that changed
            # in it, and a summary if members changed. Read those for all rooms at once.
            state_changes = await q.state_changes(conn, served, since, now, ctx.viewer.fmt)
            with_members = [r for r in served if state_changes.members_changed(r)]
            if with_members:
                summaries = await q.room_summaries(conn, with_members, now, ctx.user_id)
        elif ctx.full_state and served:
            summaries = await q.room_summaries(conn, served, now, ctx.user_id)
        sections = await joined_sections(
            conn,
            ctx,
            served,
            access,
            after=since,
            upto=now,
            full_state=ctx.full_state,
            in_range=in_range,
            summaries=summaries,
            changes=state_changes,
        )
        for room_id, section in sections.items():
            if section.timeline.events or section.state or ctx.full_state:
                resp.put_joined(room_id, section)

    async def _changed_room(
        self,
        conn: Conn,
        ctx: SyncContext,
        resp: SyncResponse,
        access: RoomAccess,
        was: q.Membership | None,
        seq: list[q.Membership],
    ) -> None:
        """A room whose membership of the user changed in the range."""
        assert ctx.since is not None
        since, now = ctx.since.pdu, ctx.now.pdu
        room_id = seq[-1].room_id
        was_joined = was is not None and was.membership == "join"
        last = seq[-1]
        if last.membership == "join":
            rejoined = any(c.membership != "join" for c in seq)
            fresh = not was_joined or rejoined
            if fresh:
                resp.fresh_rooms.add(room_id)
            resp.join[room_id] = await room_section(
                conn,
                ctx,
                room_id,
                access,
                after=since,
                upto=now,
                full_state=fresh or ctx.full_state,
            )
        elif last.membership == "knock":
            resp.knock[room_id] = await knock_state(conn, last)
        elif last.membership in ("leave", "ban"):
            joined_in_range = any(c.membership == "join" for c in seq)
            if was_joined or joined_in_range:
                resp.leave[room_id] = await room_section(
                    conn,
                    ctx,
                    room_id,
                    access,
                    after=since,
                    upto=last.since,
                    full_state=not was_joined or ctx.full_state,
                )
            else:
                # Out of an invite (rejected, withdrawn) or a knock: only its own event.
                resp.leave[room_id] = await _own_leave(conn, ctx, access, last, since)
