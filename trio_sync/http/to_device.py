"""``PUT /sendToDevice/{eventType}/{txnId}``: one ``send_to_device`` log message per
target device (``*`` for every device of a user), all in one batch.

A transaction is applied once per sending device and ``txnId``: a retried request is
answered ``{}`` and delivers nothing again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response
from quart_trio import QuartTrio

from ..errors import bad_json, invalid_param
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
            await submit(service, messages)
            return json_response({})
