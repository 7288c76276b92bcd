"""The notification stream: ``unread_notifications`` (and, when the filter's
``room.timeline.unread_thread_notifications`` asks, ``unread_thread_notifications``) of
each joined room.

Counts are absolute, set by ``notification_data`` log messages and cleared by the user's
own read receipt. Complete: every joined room gets its counts (0 when none are stored);
incremental: rooms with a count written at ``since < p <= now``. Without thread counts
requested, a room's ``unread_notifications`` includes its threads' notifications.
"""

from __future__ import annotations

from ...storage import Array, Conn
from ..response import SyncContext, SyncResponse
from .joined import joined_rooms

Counts = dict[str, int]


def _zero() -> Counts:
    return {"notification_count": 0, "highlight_count": 0}


class NotificationStream:
    """Unread counts of the rooms the user is joined to."""

    async def _counts(
        self, conn: Conn, ctx: SyncContext, resp: SyncResponse, rooms: list[str], zero: bool
    ) -> None:
        if not rooms:
            return
        rows = await conn.fetch(
            "SELECT room_id, thread_id, notification_count, highlight_count "
            "FROM unread_counts WHERE user_id = $1 AND room_id = ANY($2)",
            ctx.user_id,
            Array(rooms),
        )
        threaded = ctx.filter.room.timeline.unread_thread_notifications
        main: dict[str, Counts] = {r: _zero() for r in rooms} if zero else {}
        threads: dict[str, dict[str, Counts]] = {}
        for row in rows:
            room_id, thread_id = str(row[0]), str(row[1])
            counts = {"notification_count": int(row[2]), "highlight_count": int(row[3])}
            total = main.setdefault(room_id, _zero())
            if thread_id and threaded:
                threads.setdefault(room_id, {})[thread_id] = counts
            else:
                for key, value in counts.items():
                    total[key] += value
        for room_id, counts in main.items():
            room = resp.joined_room(room_id)
            room.unread = counts
            if threaded:
                room.unread_threads = threads.get(room_id, {})

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._counts(conn, ctx, resp, await joined_rooms(conn, ctx), zero=True)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.now.notification <= ctx.since.notification:
            return
        rows = await conn.fetch(
            "SELECT DISTINCT room_id FROM unread_counts WHERE user_id = $1 "
            "AND pos > $2 AND pos <= $3",
            ctx.user_id,
            ctx.since.notification,
            ctx.now.notification,
        )
        changed = {str(r[0]) for r in rows}
        if changed:
            rooms = [r for r in await joined_rooms(conn, ctx) if r in changed]
            await self._counts(conn, ctx, resp, rooms, zero=True)
