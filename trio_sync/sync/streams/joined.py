"""The rooms a syncing user is joined to, looked up once per response.

Ephemeral events, room account data and unread counts are shown only in rooms the user
is joined to at the response's PDU position (and that the filter's ``room`` rules allow).
"""

from __future__ import annotations

from ...storage import Conn
from ...storage.rooms import memberships_at
from ..response import SyncContext


async def joined_rooms(conn: Conn, ctx: SyncContext) -> list[str]:
    """Rooms ``ctx.user_id`` is joined to at ``ctx.now.pdu``, allowed by the room filter.

    The handler fills ``ctx.joined`` from the notifier's in-memory map when it takes the
    response's token; otherwise it is read here once (one query) and kept for later
    providers.
    """
    if ctx.joined is None:
        memberships = await memberships_at(conn, ctx.user_id, ctx.now.pdu)
        allows = ctx.filter.room.allows_room
        ctx.joined = sorted(
            r for r, m in memberships.items() if m.membership == "join" and allows(r)
        )
    return ctx.joined
