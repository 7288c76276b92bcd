"""Presence: ``PUT``/``GET /presence/{userId}/status``.

A ``PUT`` sets the calling device's presence (and the user's status message) through the
same path as ``set_presence`` on ``/sync``. A user's presence may be read by the user
itself and by users sharing a room with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response
from quart_trio import QuartTrio

from ..errors import bad_json, forbidden
from ..ingest.user_messages import PRESENCE_STATES
from ..storage import Conn, Row
from ..sync.streams.presence import presence_event
from .common import (
    CLIENT_PREFIXES,
    authenticate,
    json_response,
    own_user,
    request_object,
    user_id_param,
)

if TYPE_CHECKING:
    from ..service import Service


async def load_presence(conn: Conn, user_id: str) -> Row | None:
    """``(presence, status_msg, last_active_ts, currently_active)`` of a user, or None."""
    return await conn.fetchrow(
        "SELECT presence, status_msg, last_active_ts, currently_active FROM presence "
        "WHERE user_id = $1",
        user_id,
    )


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register the presence routes under every client prefix."""
    for prefix in CLIENT_PREFIXES:

        @app.put(f"{prefix}/presence/<user_id>/status", endpoint=f"presence_put{prefix}")
        async def presence_put(user_id: str) -> Response:
            device = await authenticate(service)
            own_user(device, user_id, "set presence")
            body = await request_object()
            state = body.get("presence")
            if state not in PRESENCE_STATES:
                raise bad_json(f"'presence' must be one of {', '.join(PRESENCE_STATES)}")
            status = body.get("status_msg")
            if status is not None and not isinstance(status, str):
                raise bad_json("'status_msg' must be a string")
            tracker = service.sync.presence
            assert tracker is not None
            await tracker.set_device(device, state, status or "")
            return json_response({})

        @app.get(f"{prefix}/presence/<user_id>/status", endpoint=f"presence_get{prefix}")
        async def presence_get(user_id: str) -> Response:
            device = await authenticate(service)
            user_id_param(user_id)
            if user_id not in service.notifier.sharing_a_room(device.user_id):
                raise forbidden("You are not allowed to see their presence")
            row = await service.engine.read_one(load_presence, user_id)
            if row is None:
                # Never reported: offline, as the user's room-mates would see it.
                return json_response({"presence": "offline"})
            event = presence_event(user_id, row[0], row[1], int(row[2]), bool(row[3]))
            content: dict[str, Any] = event["content"]
            return json_response(content)
