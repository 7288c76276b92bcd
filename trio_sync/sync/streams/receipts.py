"""The receipt stream: ``m.receipt`` in each joined room's ``ephemeral``.

One ``m.receipt`` event per room, ``{event_id: {type: {user_id: {"ts", "thread_id"}}}}``.
Complete: every receipt of the joined rooms; incremental: those written at
``since < p <= now``. An ``m.read.private`` receipt is shown only to its owner.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...storage import Array, Conn
from ..response import SyncContext, SyncResponse
from .joined import joined_rooms


class ReceiptStream:
    """Read receipts of the rooms the user is joined to."""

    async def _receipts(
        self,
        conn: Conn,
        ctx: SyncContext,
        resp: SyncResponse,
        after: int,
        rooms: list[str],
    ) -> None:
        if not rooms:
            return
        rows = await conn.fetch(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts "
            "WHERE room_id = ANY($1) AND pos > $2 AND pos <= $3 "
            "AND (receipt_type <> 'm.read.private' OR user_id = $4) ORDER BY pos",
            Array(rooms),
            after,
            ctx.now.receipt,
            ctx.user_id,
        )
        by_room: dict[str, dict[str, Any]] = {}
        for row in rows:
            content = by_room.setdefault(row[0], {})
            receipt: dict[str, Any] = {"ts": int(row[5])}
            if row[3]:
                receipt["thread_id"] = row[3]
            content.setdefault(row[4], {}).setdefault(row[1], {})[row[2]] = receipt
        ephemeral = ctx.filter.room.ephemeral
        for room_id, content in by_room.items():
            if not ephemeral.matches({"type": "m.receipt", "room_id": room_id}):
                continue
            room = resp.joined_room(room_id)
            if ephemeral.limit is None or len(room.ephemeral) < ephemeral.limit:
                event = {"type": "m.receipt", "content": content}
                room.ephemeral.append(orjson.dumps(event).decode())

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._receipts(conn, ctx, resp, 0, await joined_rooms(conn, ctx))

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        moved = ctx.now.receipt > ctx.since.receipt
        if not (moved or resp.fresh_rooms):
            return
        rooms = await joined_rooms(conn, ctx)
        fresh = [r for r in rooms if r in resp.fresh_rooms]
        # A newly joined room gets all its receipts; the others what changed.
        await self._receipts(conn, ctx, resp, 0, fresh)
        if moved:
            others = [r for r in rooms if r not in resp.fresh_rooms]
            await self._receipts(conn, ctx, resp, ctx.since.receipt, others)
