"""Account data and room tags: ``/user/{userId}/account_data/{type}``,
``/user/{userId}/rooms/{roomId}/account_data/{type}`` and ``…/rooms/{roomId}/tags``.

Only the user itself may read or write its account data. Writes become ``client_data``
log messages (tags are the room's ``m.tag`` account data, rewritten whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from quart import Response
from quart_trio import QuartTrio

from ..errors import MatrixError, bad_json, not_found
from ..storage import Conn
from .common import (
    CLIENT_PREFIXES,
    authenticate,
    json_response,
    own_user,
    request_object,
    require_joined,
    room_id_param,
    submit,
)

if TYPE_CHECKING:
    from ..service import Service

#: Account data the server keeps itself; ``PUT`` of these is 405.
SERVER_MANAGED = ("m.fully_read", "m.push_rules")


async def load_account_data(
    conn: Conn, user_id: str, room_id: str, event_type: str
) -> dict[str, Any] | None:
    """The stored content of one account-data key, or None."""
    value = await conn.fetchval(
        "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
        user_id,
        room_id,
        event_type,
    )
    if value is None:
        return None
    content: dict[str, Any] = orjson.loads(value)
    return content


def client_data(
    user_id: str, room_id: str, event_type: str, content: dict[str, Any]
) -> dict[str, Any]:
    """The ``client_data`` log message writing one account-data key."""
    body = {"user_id": user_id, "room_id": room_id, "type": event_type, "content": content}
    return {"type": "client_data", "client_data": body}


def _settable(event_type: str) -> None:
    if event_type in SERVER_MANAGED:
        raise MatrixError(405, "M_BAD_JSON", f"Cannot set {event_type} through this API.")
    if not event_type or len(event_type) > 255:
        raise bad_json("Bad account data type")


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register the account-data and tag routes under every client prefix."""

    async def get_content(user_id: str, room_id: str, event_type: str) -> Response:
        device = await authenticate(service)
        own_user(device, user_id, "read account data")
        content = await service.engine.read_one(load_account_data, user_id, room_id, event_type)
        if content is None:
            raise not_found("Account data not found.")
        return json_response(content)

    async def put_content(user_id: str, room_id: str, event_type: str) -> Response:
        device = await authenticate(service)
        own_user(device, user_id, "add account data")
        _settable(event_type)
        if room_id:
            require_joined(service, device, room_id)
        content = await request_object()
        await submit(service, [client_data(user_id, room_id, event_type, content)])
        return json_response({})

    async def change_tag(user_id: str, room_id: str, tag: str, content: Any) -> Response:
        device = await authenticate(service)
        own_user(device, user_id, "change tags")
        require_joined(service, device, room_id)
        if not tag or len(tag) > 255:
            raise bad_json("Bad tag")
        stored = await service.engine.read_one(load_account_data, user_id, room_id, "m.tag")
        tags = dict((stored or {}).get("tags") or {})
        if content is None:
            if tag not in tags:
                return json_response({})
            del tags[tag]
        else:
            tags[tag] = content
        await submit(service, [client_data(user_id, room_id, "m.tag", {"tags": tags})])
        return json_response({})

    for prefix in CLIENT_PREFIXES:
        user = f"{prefix}/user/<user_id>"

        @app.get(f"{user}/account_data/<event_type>", endpoint=f"ad_get{prefix}")
        async def global_get(user_id: str, event_type: str) -> Response:
            return await get_content(user_id, "", event_type)

        @app.put(f"{user}/account_data/<event_type>", endpoint=f"ad_put{prefix}")
        async def global_put(user_id: str, event_type: str) -> Response:
            return await put_content(user_id, "", event_type)

        @app.get(f"{user}/rooms/<room_id>/account_data/<event_type>", endpoint=f"rad_get{prefix}")
        async def room_get(user_id: str, room_id: str, event_type: str) -> Response:
            return await get_content(user_id, room_id_param(room_id), event_type)

        @app.put(f"{user}/rooms/<room_id>/account_data/<event_type>", endpoint=f"rad_put{prefix}")
        async def room_put(user_id: str, room_id: str, event_type: str) -> Response:
            return await put_content(user_id, room_id_param(room_id), event_type)

        @app.get(f"{user}/rooms/<room_id>/tags", endpoint=f"tags_get{prefix}")
        async def tags_get(user_id: str, room_id: str) -> Response:
            device = await authenticate(service)
            own_user(device, user_id, "read tags")
            room_id_param(room_id)
            stored = await service.engine.read_one(load_account_data, user_id, room_id, "m.tag")
            return json_response({"tags": (stored or {}).get("tags") or {}})

        @app.put(f"{user}/rooms/<room_id>/tags/<tag>", endpoint=f"tag_put{prefix}")
        async def tag_put(user_id: str, room_id: str, tag: str) -> Response:
            body = await request_object()
            order = body.get("order")
            if order is not None and (
                isinstance(order, bool) or not isinstance(order, int | float)
            ):
                raise bad_json("'order' must be a number")
            return await change_tag(user_id, room_id, tag, body)

        @app.delete(f"{user}/rooms/<room_id>/tags/<tag>", endpoint=f"tag_delete{prefix}")
        async def tag_delete(user_id: str, room_id: str, tag: str) -> Response:
            return await change_tag(user_id, room_id, tag, None)
