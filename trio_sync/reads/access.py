"""Who may read a room: the one rule every room read endpoint applies before anything else.

A user may read a room when

* it is joined to it now, or
* it was joined to it before (a leave or a ban after a join keeps access to what it
  could see then — history visibility decides which events that is), or
* the room's history is ``world_readable`` now.

The rule is :meth:`~trio_sync.storage.visibility.RoomAccess.may_read`, which ``/sync``
applies too: a left room the user never joined shows no earlier event there either.
A pending invite or knock, a ban without a join and a rejected invite give no access: a
user never joined reads a ``world_readable`` room as anyone does, seeing only the
``world_readable`` part of its history (``/event`` and ``/context`` on any other event are
404).
``/joined_members`` asks for more: a join now (or a ``world_readable`` room).

Denial is 403 ``M_FORBIDDEN``; ``/event`` turns it into 404 ``M_NOT_FOUND``, its only
answer for an event the user may not read. An unknown room is denied like a room the
user is not in, so the answers tell nothing about which rooms exist.
"""

from __future__ import annotations

from ..errors import forbidden
from ..storage import Conn
from ..storage.visibility import RoomAccess, load_access


async def room_access(
    conn: Conn, user_id: str, room_id: str, now: int, *, joined_now: bool = False
) -> RoomAccess:
    """The user's :class:`RoomAccess` to ``room_id`` as of position ``now``; 403 unless
    it may read the room (with ``joined_now``: unless it is joined at ``now``), or the room
    is ``world_readable`` at ``now``."""
    access = (await load_access(conn, user_id, [room_id], now))[room_id]
    if access.setting_at(now) == "world_readable":
        return access
    if joined_now:
        if access.membership_at(now) != "join":
            raise forbidden(f"{user_id} is not joined to room {room_id[:255]}")
    elif not access.may_read(now):
        raise forbidden(f"{user_id} is not and was never joined to room {room_id[:255]}")
    return access
