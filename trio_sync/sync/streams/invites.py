"""The invite stream: ``rooms.invite`` with ``invite_state``, and invites that went away.

Invites come from ``new_invite_event`` messages and from invite memberships in the room
stream (deduplicated by event ID). An invite retired by a join shows up as the join in the
PDU stream; one retired by a rejection or withdrawal becomes a ``rooms.leave`` entry.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...storage import Conn
from ...tokens import TopologyToken
from ..response import JoinedRoom, RoomTimeline, SyncContext, SyncResponse

_STRIPPED = ("content", "sender", "state_key", "type")


def invite_state(event: dict[str, Any]) -> list[str]:
    """The stripped state a client shows for an invite, the invite itself last."""
    stripped = event.get("unsigned", {}).get("invite_room_state") or []
    out = [
        orjson.dumps(s).decode()
        for s in stripped
        if isinstance(s, dict)
        and not (s.get("type") == "m.room.member" and s.get("state_key") == event["state_key"])
    ]
    out.append(orjson.dumps({k: event[k] for k in _STRIPPED if k in event}).decode())
    return out


class InviteStream:
    """Active invites, and retired ones, on the invite stream's positions."""

    async def _active(self, conn: Conn, ctx: SyncContext, resp: SyncResponse, after: int) -> None:
        at = ctx.now.invite
        rows = await conn.fetch(
            "SELECT room_id, event_json FROM invites WHERE user_id = $1 AND pos > $2 "
            "AND pos <= $3 AND (retired_at IS NULL OR retired_at > $3) ORDER BY pos",
            ctx.user_id,
            after,
            at,
        )
        for row in rows:
            room_id = row[0]
            if ctx.filter.room.allows_room(room_id) and not resp.has_room(room_id):
                event = orjson.loads(row[1])
                if event.get("sender") in ctx.viewer.ignored:
                    continue
                resp.invite[room_id] = invite_state(event)

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._active(conn, ctx, resp, 0)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.now.invite <= ctx.since.invite:
            return
        await self._active(conn, ctx, resp, ctx.since.invite)
        rows = await conn.fetch(
            "SELECT i.room_id, e.client_json, e.depth, e.pos FROM invites i "
            "LEFT JOIN events e ON e.event_id = i.retired_by_event_id "
            "WHERE i.user_id = $1 AND i.retired_at > $2 AND i.retired_at <= $3 "
            "AND i.retired_membership <> 'join' ORDER BY i.retired_at",
            ctx.user_id,
            ctx.since.invite,
            ctx.now.invite,
        )
        for row in rows:
            room_id = row[0]
            if ctx.filter.room.allows_room(room_id) and not resp.has_room(room_id):
                # prev_batch: just before the event that ended the invite, when stored.
                if row[1] is None:
                    timeline = RoomTimeline([], False, str(ctx.now))
                else:
                    place = TopologyToken(int(row[2]), int(row[3]))
                    timeline = RoomTimeline([str(row[1])], False, str(place))
                resp.leave[room_id] = JoinedRoom(timeline, [], ctx.state_field)
