"""The typing stream: ``m.typing`` in each joined room's ``ephemeral``.

Typing lives in memory (:mod:`trio_sync.typing_state`); the handler hands this provider
an immutable view taken with the response's token. Incremental: rooms whose typing list
changed at ``since < p <= now``, each with its whole current list (possibly empty). When
``since`` holds a typing position of another process, every joined room where someone
is typing is sent instead. Never shown in rooms the user is not joined to.
"""

from __future__ import annotations

import orjson

from ...storage import Conn
from ..response import SyncContext, SyncResponse
from .joined import joined_rooms


def typing_event(users: tuple[str, ...]) -> str:
    return orjson.dumps({"type": "m.typing", "content": {"user_ids": list(users)}}).decode()


class TypingStream:
    """Who is typing, from the in-memory typing view."""

    async def _rooms(
        self, conn: Conn, ctx: SyncContext, resp: SyncResponse, candidates: list[str]
    ) -> None:
        if not candidates:
            return
        joined = set(await joined_rooms(conn, ctx))
        ephemeral = ctx.filter.room.ephemeral
        for room_id in candidates:
            if room_id not in joined or not ephemeral.matches(
                {"type": "m.typing", "room_id": room_id}
            ):
                continue
            room = resp.joined_room(room_id)
            if ephemeral.limit is None or len(room.ephemeral) < ephemeral.limit:
                room.ephemeral.append(typing_event(ctx.typing[room_id].users))

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        busy = [r for r, t in ctx.typing.items() if t.users and t.position <= ctx.now.typing]
        await self._rooms(conn, ctx, resp, sorted(busy))

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.typing_reset:
            await self.complete(conn, ctx, resp)
            return
        since, now = ctx.since.typing, ctx.now.typing
        # A newly joined room gets its current typing list; the others what changed.
        changed = [
            r
            for r, t in ctx.typing.items()
            if since < t.position <= now or (r in resp.fresh_rooms and t.users)
        ]
        await self._rooms(conn, ctx, resp, sorted(changed))
