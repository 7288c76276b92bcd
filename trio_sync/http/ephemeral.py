"""Typing, receipts and read markers: ``PUT /rooms/{roomId}/typing/{userId}``,
``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``, ``POST /rooms/{roomId}/read_markers``.

Only members of the room may write these. They become ``typing``, ``receipt`` and (for
``m.fully_read``) ``client_data`` log messages.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quart import Response
from quart_trio import QuartTrio

from ..errors import bad_json, invalid_param
from .account_data import client_data
from .common import (
    CLIENT_PREFIXES,
    authenticate,
    json_response,
    own_user,
    request_object,
    require_joined,
    submit,
)

if TYPE_CHECKING:
    from ..service import Service
    from ..storage.accounts import Device

#: ``timeout`` of a typing notice when the client gives none (ms).
DEFAULT_TYPING_MS = 30_000
RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")


def typing_message(room_id: str, user_id: str, typing: bool, timeout_ms: int) -> dict[str, Any]:
    """The ``typing`` log message (Dendrite's ``OutputTypingEvent``)."""
    body: dict[str, Any] = {
        "event": {"type": "m.typing", "room_id": room_id, "user_id": user_id, "typing": typing}
    }
    if typing:
        expire = datetime.fromtimestamp(time.time() + timeout_ms / 1000, UTC)
        body["ExpireTime"] = expire.isoformat().replace("+00:00", "Z")
    return {"type": "typing", "typing": body}


def receipt_messages(
    device: Device, room_id: str, receipt_type: str, event_id: str, thread_id: str | None
) -> list[dict[str, Any]]:
    """The log messages of one receipt: ``m.fully_read`` is room account data."""
    if not event_id.startswith("$"):
        raise invalid_param(f"Not an event ID: {event_id[:80]!r}")
    if receipt_type == "m.fully_read":
        return [client_data(device.user_id, room_id, "m.fully_read", {"event_id": event_id})]
    body: dict[str, Any] = {
        "user_id": device.user_id,
        "room_id": room_id,
        "event_id": event_id,
        "type": receipt_type,
        "timestamp": int(time.time() * 1000),
    }
    if thread_id is not None:
        body["thread_id"] = thread_id
    return [{"type": "receipt", "receipt": body}]


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register the typing, receipt and read-marker routes under every client prefix."""
    for prefix in CLIENT_PREFIXES:

        @app.put(f"{prefix}/rooms/<room_id>/typing/<user_id>", endpoint=f"typing{prefix}")
        async def typing(room_id: str, user_id: str) -> Response:
            device = await authenticate(service)
            own_user(device, user_id, "send typing notices")
            body = await request_object()
            state = body.get("typing")
            if not isinstance(state, bool):
                raise bad_json("'typing' must be a boolean")
            timeout = body.get("timeout", DEFAULT_TYPING_MS)
            if state and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
                raise bad_json("'timeout' must be a non-negative integer (milliseconds)")
            require_joined(service, device, room_id)
            await submit(service, [typing_message(room_id, user_id, state, int(timeout))])
            return json_response({})

        @app.post(
            f"{prefix}/rooms/<room_id>/receipt/<receipt_type>/<event_id>",
            endpoint=f"receipt{prefix}",
        )
        async def receipt(room_id: str, receipt_type: str, event_id: str) -> Response:
            device = await authenticate(service)
            if receipt_type not in RECEIPT_TYPES:
                raise invalid_param(f"Unknown receipt type {receipt_type[:80]!r}")
            body = await request_object(empty_ok=True)
            thread_id = body.get("thread_id")
            if thread_id is not None:
                if not isinstance(thread_id, str) or not thread_id:
                    raise invalid_param("thread_id field must be a non-empty string")
                if receipt_type == "m.fully_read":
                    raise invalid_param("thread_id is not allowed for m.fully_read")
                if thread_id != "main" and not thread_id.startswith("$"):
                    raise invalid_param("thread_id must be 'main' or an event ID")
            require_joined(service, device, room_id)
            messages = receipt_messages(device, room_id, receipt_type, event_id, thread_id)
            await submit(service, messages)
            return json_response({})

        @app.post(f"{prefix}/rooms/<room_id>/read_markers", endpoint=f"read_markers{prefix}")
        async def read_markers(room_id: str) -> Response:
            device = await authenticate(service)
            body = await request_object()
            messages: list[dict[str, Any]] = []
            for receipt_type in ("m.fully_read", "m.read", "m.read.private"):
                event_id = body.get(receipt_type)
                if event_id is None:
                    continue
                if not isinstance(event_id, str):
                    raise bad_json(f"{receipt_type!r} must be an event ID")
                messages += receipt_messages(device, room_id, receipt_type, event_id, None)
            require_joined(service, device, room_id)
            await submit(service, messages)
            return json_response({})
