"""``/members``, ``/joined_members`` and ``/joined_rooms``: who is in a room, where I am."""

from __future__ import annotations

from typing import Any

import orjson

from ..storage import Conn
from ..storage import rooms as q
from ..storage.engine import FOREVER
from ..sync.timeline import Viewer
from .access import room_access

MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


async def members(
    conn: Conn,
    viewer: Viewer,
    room_id: str,
    at: int,
    membership: str | None,
    not_membership: str | None,
) -> dict[str, Any]:
    """The ``/members`` body: the room's member events as of ``at`` — or, for a user who
    has left, as of its leave, whichever is earlier. 403 as :func:`.access.room_access`."""
    access = await room_access(conn, viewer.user_id, room_id, at)
    if access.membership_at(at) != "join" and access.setting_at(at) != "world_readable":
        # Frozen at the moment the user stopped being in the room.
        left = access.left_at()
        at = min(at, left) if left is not None else at
    rows = await conn.fetch(
        f"SELECT e.{q.json_column(viewer.fmt)}, s.membership FROM room_state s "
        "JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 AND s.type = $2 "
        "AND s.added_at <= $3 AND s.removed_at > $3 ORDER BY s.added_at",
        room_id,
        q.MEMBER,
        at,
    )
    chunk = [
        orjson.Fragment(viewer.serve_state(r[0]))
        for r in rows
        if (membership is None or r[1] == membership)
        and (not_membership is None or r[1] != not_membership)
    ]
    return {"chunk": chunk}


async def joined_members(conn: Conn, user_id: str, room_id: str, now: int) -> dict[str, Any]:
    """The ``/joined_members`` body; 403 unless the user is joined (or the room is world
    readable).

    The spec asks for the user to be in the room; the reference homeserver lets anyone
    never in a ``world_readable`` room read it (its peeking rule), so such rooms stay
    open here too, to anyone.
    """
    await room_access(conn, user_id, room_id, now, joined_now=True)
    rows = await conn.fetch(
        "SELECT s.state_key, e.client_json FROM room_state s "
        "JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 AND s.type = $2 "
        "AND s.membership = 'join' AND s.added_at <= $3 AND s.removed_at > $3",
        room_id,
        q.MEMBER,
        now,
    )
    joined: dict[str, Any] = {}
    for row in rows:
        user = str(row[0])
        content = orjson.loads(row[1]).get("content") or {}
        profile = {}
        for key in ("displayname", "avatar_url"):
            if isinstance(content.get(key), str):
                profile["display_name" if key == "displayname" else key] = content[key]
        joined[user] = profile
    return {"joined": joined}


async def joined_rooms(conn: Conn, user_id: str) -> dict[str, Any]:
    """The ``/joined_rooms`` body."""
    rows = await conn.fetch(
        "SELECT room_id FROM room_state WHERE state_key = $1 AND type = $2 "
        "AND membership = 'join' AND removed_at = $3",
        user_id,
        q.MEMBER,
        FOREVER,
    )
    return {"joined_rooms": sorted(r[0] for r in rows)}
