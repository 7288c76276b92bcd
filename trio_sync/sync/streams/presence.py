"""The presence stream: top-level ``presence``.

Only the presence of users who share a joined room with the syncing user at the
response's PDU position (and the user's own) is shown. Complete: each such user's current
presence; incremental: those whose presence changed at ``since < p <= now``. Filtered by
the filter's ``presence`` (types, senders, ``limit``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from ...storage import Array, Conn
from ...storage.engine import Row
from ...storage.rooms import MEMBER
from ..response import SyncContext, SyncResponse

_SHARED = (
    "SELECT p.user_id, p.presence, p.status_msg, p.last_active_ts, p.currently_active "
    "FROM presence p WHERE p.pos > $2 AND p.pos <= $3 AND (p.user_id = $1 OR p.user_id IN ("
    "SELECT o.state_key FROM room_state m JOIN room_state o ON o.room_id = m.room_id "
    "WHERE m.state_key = $1 AND m.type = $4 AND m.membership = 'join' "
    "AND m.added_at <= $5 AND m.removed_at > $5 AND o.type = $4 AND o.membership = 'join' "
    "AND o.added_at <= $5 AND o.removed_at > $5)) ORDER BY p.pos"
)


def presence_event(
    user_id: str, state: str, status_msg: str | None, last_active_ts: int, active: bool
) -> dict[str, Any]:
    """The ``m.presence`` event clients receive."""
    content: dict[str, Any] = {
        "presence": state,
        "last_active_ago": max(0, int(time.time() * 1000) - last_active_ts),
        "currently_active": active,
    }
    if status_msg:
        content["status_msg"] = status_msg
    return {"type": "m.presence", "sender": user_id, "content": content}


class PresenceStream:
    """Presence of the users the syncing user shares a room with."""

    async def _changed(self, conn: Conn, ctx: SyncContext, resp: SyncResponse, after: int) -> None:
        rows = await conn.fetch(_SHARED, ctx.user_id, after, ctx.now.presence, MEMBER, ctx.now.pdu)
        self._append(ctx, resp, rows)

    def _append(self, ctx: SyncContext, resp: SyncResponse, rows: Sequence[Row]) -> None:
        wanted = ctx.filter.presence
        for row in rows:
            if not wanted.matches({"type": "m.presence", "sender": row[0]}):
                continue
            if wanted.limit is not None and len(resp.presence) >= wanted.limit:
                break
            event = presence_event(row[0], row[1], row[2], int(row[3]), bool(row[4]))
            resp.presence.append(orjson.dumps(event).decode())

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._changed(conn, ctx, resp, 0)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.now.presence > ctx.since.presence:
            await self._changed(conn, ctx, resp, ctx.since.presence)
        if resp.fresh_rooms:
            await self._newly_shared(conn, ctx, resp)

    async def _newly_shared(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        """The current presence of the members of rooms the user newly joined (users it
        may not have shared a room with before), unless already sent."""
        sent = {orjson.loads(e)["sender"] for e in resp.presence}
        rows = await conn.fetch(
            "SELECT p.user_id, p.presence, p.status_msg, p.last_active_ts, "
            "p.currently_active FROM presence p WHERE p.pos <= $2 AND p.user_id IN ("
            "SELECT state_key FROM room_state WHERE room_id = ANY($1) AND type = $3 "
            "AND membership = 'join' AND added_at <= $4 AND removed_at > $4) ORDER BY p.pos",
            Array(sorted(resp.fresh_rooms)),
            ctx.now.presence,
            MEMBER,
            ctx.now.pdu,
        )
        self._append(ctx, resp, [r for r in rows if r[0] not in sent])
