"""The account-data stream: top-level ``account_data`` and each joined room's.

Stored per (user, room, type) at the position of its latest write, so a range
``since < p <= now`` returns each changed key once, with its newest content. Room account
data is shown for rooms the user is joined to. Filtered by the filter's ``account_data``
and ``room.account_data`` (types, ``limit``).
"""

from __future__ import annotations

import orjson

from ...storage import Conn
from ..response import SyncContext, SyncResponse
from .joined import joined_rooms


def account_data_event(event_type: str, content_json: str) -> str:
    """``{"type", "content"}`` with the stored content embedded as it is."""
    return '{"type":' + orjson.dumps(event_type).decode() + ',"content":' + content_json + "}"


class AccountDataStream:
    """Global and per-room account data, on the account-data positions."""

    async def _changed(self, conn: Conn, ctx: SyncContext, resp: SyncResponse, after: int) -> None:
        rows = await conn.fetch(
            "SELECT room_id, type, content FROM account_data WHERE user_id = $1 "
            "AND pos > $2 AND pos <= $3 ORDER BY pos",
            ctx.user_id,
            after,
            ctx.now.account_data,
        )
        if not rows:
            return
        top = ctx.filter.account_data
        per_room = ctx.filter.room.account_data
        joined: set[str] | None = None
        for row in rows:
            room_id, event_type, content = str(row[0]), str(row[1]), str(row[2])
            if not room_id:
                if top.matches({"type": event_type}) and (
                    top.limit is None or len(resp.account_data) < top.limit
                ):
                    resp.account_data.append(account_data_event(event_type, content))
                continue
            if joined is None:
                joined = set(await joined_rooms(conn, ctx))
            if room_id not in joined or not per_room.matches(
                {"type": event_type, "room_id": room_id}
            ):
                continue
            room = resp.joined_room(room_id)
            if per_room.limit is None or len(room.account_data) < per_room.limit:
                room.account_data.append(account_data_event(event_type, content))

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._changed(conn, ctx, resp, 0)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.now.account_data > ctx.since.account_data:
            await self._changed(conn, ctx, resp, ctx.since.account_data)
