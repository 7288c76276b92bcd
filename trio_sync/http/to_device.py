"""``PUT /sendToDevice/{eventType}/{txnId}``: one ``send_to_device`` log message per
target device (``*`` for every device of a user), all in one batch.

A transaction is applied once per sending device and ``txnId``: a retried request is
answered ``{}`` and delivers nothing again. With a homeserver database, ``*`` names the
devices the homeserver knows as well as trio-sync's own (:func:`expand_all_devices`):
devices that only ever authenticated through the homeserver are not registered here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response
from quart_trio import QuartTrio

from ..errors import StorageError, bad_json, invalid_param
from ..homeserver.database import homeserver_device_ids
from ..homeserver.providers import unavailable
from ..storage.accounts import device_ids_of
from .common import CLIENT_PREFIXES, authenticate, json_response, request_object, submit

if TYPE_CHECKING:
    from ..service import Service
    from ..storage.accounts import Device


def to_device_messages(
    device: Device, event_type: str, txn_id: str, messages: object
) -> list[dict[str, Any]]:
    """The ``send_to_device`` log messages of a request's ``messages`` map."""
    if not isinstance(messages, dict):
        raise bad_json("'messages' must be an object of user IDs")
    out: list[dict[str, Any]] = []
    for user_id, devices in messages.items():
        if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
            raise bad_json(f"Not a user ID: {str(user_id)[:80]!r}")
        if not isinstance(devices, dict):
            raise bad_json(f"messages[{user_id!r}] must be an object of device IDs")
        for device_id, content in devices.items():
            if not isinstance(device_id, str) or not device_id:
                raise bad_json("device IDs must be non-empty strings")
            if not isinstance(content, dict):
                raise bad_json(f"the message for {user_id} {device_id} must be an object")
            body = {
                "user_id": user_id,
                "device_id": device_id,
                "sender": device.user_id,
                "type": event_type,
                "content": content,
                "sender_device": device.device_id,
                "txn_id": txn_id,
            }
            out.append({"type": "send_to_device", "send_to_device": body})
    return out


async def expand_all_devices(
    service: Service, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``messages`` with each ``*`` target replaced by one message per device of the
    user, trio-sync's own and the homeserver's (two reads); unchanged without a
    homeserver database. 503 when that database cannot be reached."""
    if service.homeserver_db is None:
        return messages
    users = sorted(
        {
            m["send_to_device"]["user_id"]
            for m in messages
            if m["send_to_device"]["device_id"] == "*"
        }
    )
    if not users:
        return messages
    devices = await service.engine.read(device_ids_of, users)
    try:
        theirs = await service.homeserver_db.engine.read_one(homeserver_device_ids, users)
    except StorageError:
        raise unavailable("the homeserver's database is unreachable") from None
    out: list[dict[str, Any]] = []
    for m in messages:
        body = m["send_to_device"]
        if body["device_id"] != "*":
            out.append(m)
            continue
        user_id = body["user_id"]
        for device_id in sorted(devices.get(user_id, set()) | theirs.get(user_id, set())):
            out.append({**m, "send_to_device": {**body, "device_id": device_id}})
    return out


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register ``sendToDevice`` under every client prefix."""
    for prefix in CLIENT_PREFIXES:

        @app.put(f"{prefix}/sendToDevice/<event_type>/<txn_id>", endpoint=f"to_device{prefix}")
        async def send_to_device(event_type: str, txn_id: str) -> Response:
            device = await authenticate(service)
            if not event_type or len(event_type) > 255 or not txn_id or len(txn_id) > 255:
                raise invalid_param("Bad event type or transaction ID")
            body = await request_object()
            if "messages" not in body:
                raise bad_json("'messages' is required")
            messages = to_device_messages(device, event_type, txn_id, body["messages"])
            await submit(service, await expand_all_devices(service, messages))
            return json_response({})
