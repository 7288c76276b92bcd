"""The PDU stream: joined and left rooms, their timelines and state.

Which rooms (after Synapse's and Dendrite's sync servers):
* complete: every room the user is joined to at ``now``; left/banned rooms only with
  ``include_leave``;
* incremental: rooms whose membership of the user changed in ``since < p <= now``
  (newly joined → full state; left or banned → ``rooms.leave`` with the timeline up to
  the leave and nothing after it), plus joined rooms with new events.

State returned is the state at the start of the returned timeline: all of it for a
complete sync, a newly joined room or ``full_state``; otherwise what changed between
``since`` and the start of the timeline. Repeated joins and profile changes are changes,
not new joins.
"""

from __future__ import annotations

from ...storage import Conn
from ...storage import rooms as q
from ...tokens import TopologyToken
from ..response import JoinedRoom, RoomTimeline, SyncContext, SyncResponse

#: Up to this many new events, read them all in one query and share them out by room.
READ_RANGE_MAX = 200
#: Up to this many, find the rooms with new events by one range scan; above it, ask each
#: joined room for its newest events (an index descent each).
RANGE_SCAN_MAX = 2000


async def room_section(
    conn: Conn,
    ctx: SyncContext,
    room_id: str,
    *,
    after: int,
    upto: int,
    full_state: bool,
    in_range: list[q.TimelineEvent] | None = None,
) -> JoinedRoom:
    """Timeline of events at ``after < p <= upto`` (newest ``limit``) and the state before it.

    ``in_range`` is every syncable event of the room in that range, when the caller has
    already read them. ``limited`` is true exactly when there are events in the range
    older than the timeline's first event.
    """
    limit = ctx.filter.timeline_limit(10)
    events = in_range
    if events is None:
        events = await q.recent_events(conn, room_id, after, upto, limit + 1)
    limited = len(events) > limit
    if limited:
        events = events[-limit:]
    before = (events[0].pos if events else upto + 1) - 1
    if full_state:
        state = await q.state_at(conn, room_id, before)
    elif limited:
        state = await q.state_delta(conn, room_id, after, before)
    else:
        # The timeline holds every event of the room since ``after``; state only changes
        # at the room's own events, so nothing changed before the timeline's start.
        state = []
    in_timeline = {e.event_id for e in events}
    prev_batch = str(TopologyToken(events[0].depth, events[0].pos)) if events else str(ctx.now)
    return JoinedRoom(
        timeline=RoomTimeline([e.json for e in events], limited, prev_batch),
        state=[json for event_id, json in state if event_id not in in_timeline],
    )


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


async def _own_leave(conn: Conn, ctx: SyncContext, m: q.Membership) -> JoinedRoom:
    """A left room the user never saw from inside: only its own membership event."""
    row = await conn.fetchrow("SELECT client_json FROM events WHERE event_id = $1", m.event_id)
    events = [str(row[0])] if row is not None else []
    return JoinedRoom(RoomTimeline(events, False, str(ctx.now)), [])


class PduStream:
    """Rooms the user is or was in, from the room event stream."""

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        now = ctx.now.pdu
        allows = ctx.filter.room.allows_room
        for room_id, m in (await q.memberships_at(conn, ctx.user_id, now)).items():
            if not allows(room_id):
                continue
            if m.membership == "join":
                resp.join[room_id] = await room_section(
                    conn, ctx, room_id, after=0, upto=now, full_state=True
                )
            elif m.membership in ("leave", "ban") and ctx.filter.room.include_leave:
                if await _ever_joined_before(conn, ctx.user_id, room_id, m.since):
                    resp.leave[room_id] = await room_section(
                        conn, ctx, room_id, after=0, upto=m.since, full_state=True
                    )
                else:
                    resp.leave[room_id] = await _own_leave(conn, ctx, m)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        since, now = ctx.since.pdu, ctx.now.pdu
        if now <= since and not ctx.full_state:
            return
        allows = ctx.filter.room.allows_room
        current, changed = await q.memberships_now_and_since(conn, ctx.user_id, since, now)
        changes: dict[str, list[q.Membership]] = {}
        for change in changed:
            changes.setdefault(change.room_id, []).append(change)
        before = await q.memberships_at(conn, ctx.user_id, since) if changes else {}
        handled: set[str] = set()
        for room_id, seq in changes.items():
            handled.add(room_id)
            if not allows(room_id):
                continue
            was = before.get(room_id)
            was_joined = was is not None and was.membership == "join"
            last = seq[-1]
            rejoined = any(c.membership != "join" for c in seq)
            if last.membership == "join":
                fresh = not was_joined or rejoined
                resp.join[room_id] = await room_section(
                    conn,
                    ctx,
                    room_id,
                    after=since,
                    upto=now,
                    full_state=fresh or ctx.full_state,
                )
            elif last.membership in ("leave", "ban"):
                joined_in_range = any(c.membership == "join" for c in seq)
                if was_joined or joined_in_range:
                    resp.leave[room_id] = await room_section(
                        conn,
                        ctx,
                        room_id,
                        after=since,
                        upto=last.since,
                        full_state=not was_joined or ctx.full_state,
                    )
                else:
                    # Out of an invite (rejected, withdrawn) or a knock: only its own event.
                    resp.leave[room_id] = await _own_leave(conn, ctx, last)
        joined = [r for r, m in current.items() if m.membership == "join" and r not in handled]
        joined = [r for r in joined if allows(r)]
        if not joined:
            return
        in_range: dict[str, list[q.TimelineEvent]] = {}
        if ctx.full_state:
            active = set(joined)
        elif now - since <= READ_RANGE_MAX:
            in_range = await q.events_in_range(conn, joined, since, now)
            active = set(in_range)
        elif now - since <= RANGE_SCAN_MAX:
            active = await q.rooms_with_events(conn, joined, since, now)
        else:
            active = set(joined)
        for room_id in joined:
            if room_id not in active:
                continue
            section = await room_section(
                conn,
                ctx,
                room_id,
                after=since,
                upto=now,
                full_state=ctx.full_state,
                in_range=in_range.get(room_id),
            )
            if section.timeline.events or section.state or ctx.full_state:
                resp.join[room_id] = section
