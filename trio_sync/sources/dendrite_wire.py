"""Dendrite's JetStream output streams: their settings, and their messages as log messages.

Stream names are ``<prefix><Name>`` (prefix ``Dendrite`` by default); each stream takes the
subjects ``<stream>`` and ``<stream>.>``, with interest retention. Producers publish on the
bare stream name, so one stream's order is global. What each message carries, and the
trio-sync log message it becomes:

* ``OutputRoomEvent`` — headers ``output_room_event_type``, ``room_id``; the body is the
  room server's ``OutputEvent`` JSON, which is trio-sync's own room message format.
* ``OutputClientData`` — header ``user_id``; body ``{room_id, type, read_marker?,
  ignored_users?}`` without the content, which is read from the homeserver's account data
  table → ``client_data``.
* ``OutputReceiptEvent`` — headers only: ``user_id``, ``room_id``, ``event_id``, ``type``,
  ``timestamp`` → ``receipt``.
* ``OutputTypingEvent`` — headers only: ``user_id``, ``room_id``, ``typing`` (Go
  ``strconv.FormatBool``), ``timeout_ms`` → ``typing`` expiring ``timeout_ms`` after it is
  read (at most 120 s).
* ``OutputSendToDeviceEvent`` — headers ``sender``, ``user_id``; body ``{user_id,
  device_id, sender, type, content}``, one message per target device → ``send_to_device``.
* ``OutputKeyChangeEvent`` — header ``user_id``; body the key server's ``DeviceMessage``
  (Go field names: ``Type`` 0 or absent for device keys, 1 for cross-signing;
  ``DeviceKeys.{UserID, DeviceID, DisplayName, KeyJSON}`` with ``KeyJSON`` base64;
  ``CrossSigningKeyUpdate.signing_keys``; ``StreamID``; ``DeviceChangeID``) → ``key_change``.
* ``OutputNotificationData`` — header ``user_id``; body ``{room_id,
  unread_highlight_count, unread_notification_count}`` → ``notification_data``.
* ``OutputPresenceEvent`` — headers only: ``user_id``, ``presence``, ``status_msg`` (a
  present but empty header clears it), ``last_active_ts``, ``from_sync`` → ``presence``.

Every function here is pure and raises :class:`BadMessage` for a message it cannot
translate.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..ingest.bad_message import BadMessage

#: Typing notices may not last longer than this (the log format's own limit).
MAX_TYPING_MS = 120_000

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """One of Dendrite's streams as its setup creates it."""

    name: str
    memory: bool = False
    #: Seconds a message is kept at most (0: no limit).
    max_age: float = 0.0


#: The streams Dendrite's sync API consumes, with Dendrite's storage settings.
STREAMS = (
    StreamSettings("OutputRoomEvent"),
    StreamSettings("OutputClientData"),
    StreamSettings("OutputReceiptEvent"),
    StreamSettings("OutputTypingEvent", memory=True, max_age=60.0),
    StreamSettings("OutputSendToDeviceEvent"),
    StreamSettings("OutputKeyChangeEvent"),
    StreamSettings("OutputNotificationData"),
    StreamSettings("OutputPresenceEvent", memory=True, max_age=300.0),
)


def wire_bytes(headers: Headers | None, data: bytes) -> bytes:
    """A NATS message as it travels (``NATS/1.0`` header block, blank line, body): what
    ``ingest_rejects`` keeps of a message that could not be translated."""
    lines = ["NATS/1.0"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def header(headers: Headers | None, name: str) -> str:
    """A required header (``BadMessage`` if absent or empty)."""
    value = (headers or {}).get(name)
    if not value:
        raise BadMessage(f"header {name!r} is missing")
    return value


def _int_header(headers: Headers | None, name: str) -> int:
    value = header(headers, name)
    try:
        return int(value)
    except ValueError:
        raise BadMessage(f"header {name!r} is not an integer: {value[:40]!r}") from None


def _go_bool(value: str, name: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise BadMessage(f"header {name!r} is not a boolean: {value[:40]!r}")


def body(data: bytes) -> dict[str, Any]:
    """The message body as a JSON object."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadMessage("body must be a JSON object")
    return doc


def _message(kind: str, inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, kind: inner}


def client_data(headers: Headers | None, doc: dict[str, Any], content: object) -> dict[str, Any]:
    """``OutputClientData`` with the account data ``content`` looked up for it."""
    kind = doc.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadMessage("account data message has no 'type'")
    if not isinstance(content, dict):
        raise BadMessage(f"no content for account data {kind[:80]!r}")
    room = doc.get("room_id") or ""
    if not isinstance(room, str):
        raise BadMessage("'room_id' must be a string")
    return _message(
        "client_data",
        {"user_id": header(headers, "user_id"), "room_id": room, "type": kind, "content": content},
    )


def content_carried(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The content an ``OutputClientData`` message carries itself, for the two types
    whose content it includes (``m.ignored_user_list`` via ``ignored_users``,
    ``m.fully_read`` via ``read_marker``); None otherwise."""
    ignored = doc.get("ignored_users")
    if doc.get("type") == "m.ignored_user_list" and isinstance(ignored, dict):
        users = ignored.get("ignored_users")
        return {"ignored_users": users if isinstance(users, dict) else {}}
    marker = doc.get("read_marker")
    if doc.get("type") == "m.fully_read" and isinstance(marker, dict):
        fully_read = marker.get("m.fully_read")
        if isinstance(fully_read, str) and fully_read:
            return {"event_id": fully_read}
    return None


def receipt(headers: Headers | None) -> dict[str, Any]:
    """``OutputReceiptEvent`` (headers only)."""
    return _message(
        "receipt",
        {
            "user_id": header(headers, "user_id"),
            "room_id": header(headers, "room_id"),
            "event_id": header(headers, "event_id"),
            "type": header(headers, "type"),
            "timestamp": _int_header(headers, "timestamp"),
        },
    )


def typing(headers: Headers | None, now: datetime | None = None) -> dict[str, Any]:
    """``OutputTypingEvent`` (headers only); the notice lasts ``timeout_ms`` from ``now``."""
    on = _go_bool(header(headers, "typing"), "typing")
    inner: dict[str, Any] = {
        "event": {
            "type": "m.typing",
            "room_id": header(headers, "room_id"),
            "user_id": header(headers, "user_id"),
            "typing": on,
        }
    }
    if on:
        timeout = min(max(_int_header(headers, "timeout_ms"), 0), MAX_TYPING_MS)
        expire = (now or datetime.now(UTC)) + timedelta(milliseconds=timeout)
        inner["ExpireTime"] = expire.isoformat()
    return _message("typing", inner)


def send_to_device(doc: dict[str, Any]) -> dict[str, Any]:
    """``OutputSendToDeviceEvent``: the body is already one device's message."""
    return _message(
        "send_to_device",
        {k: doc.get(k) for k in ("user_id", "device_id", "sender", "type", "content")},
    )


def key_change(doc: dict[str, Any]) -> dict[str, Any]:
    """``OutputKeyChangeEvent``: the key server's ``DeviceMessage``."""
    kind = doc.get("Type", 0) or 0
    if kind == 1:
        update = doc.get("CrossSigningKeyUpdate")
        if not isinstance(update, dict) or not isinstance(update.get("signing_keys"), dict):
            raise BadMessage("cross-signing DeviceMessage has no CrossSigningKeyUpdate")
        return _message("key_change", {"Type": 1, "CrossSigningKeyUpdate": update})
    if kind != 0:
        raise BadMessage(f"unknown DeviceMessage Type {str(kind)[:20]!r}")
    keys = doc.get("DeviceKeys")
    if not isinstance(keys, dict):
        raise BadMessage("device-key DeviceMessage has no DeviceKeys")
    return _message(
        "key_change",
        {
            "Type": 0,
            "DeviceKeys": {
                "user_id": keys.get("UserID"),
                "device_id": keys.get("DeviceID"),
                "display_name": keys.get("DisplayName"),
                "key_json": _key_json(keys.get("KeyJSON")),
            },
            "DeviceChangeID": doc.get("DeviceChangeID", 0),
        },
    )


def _key_json(value: object) -> object:
    """Go's ``[]byte`` JSON (base64) holding the device's keys as JSON; None if empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadMessage("KeyJSON must be base64")
    try:
        return orjson.loads(base64.b64decode(value, validate=True)) if value else None
    except (binascii.Error, orjson.JSONDecodeError):
        raise BadMessage("KeyJSON is not base64-encoded JSON") from None


def notification_data(headers: Headers | None, doc: dict[str, Any]) -> dict[str, Any]:
    """``OutputNotificationData``: absolute unread counts of the header's user."""
    return _message(
        "notification_data",
        {
            "user_id": header(headers, "user_id"),
            "room_id": doc.get("room_id"),
            "unread_notification_count": doc.get("unread_notification_count", 0),
            "unread_highlight_count": doc.get("unread_highlight_count", 0),
        },
    )


def presence(headers: Headers | None) -> dict[str, Any]:
    """``OutputPresenceEvent`` (headers only)."""
    state = header(headers, "presence").lower()
    inner: dict[str, Any] = {
        "user_id": header(headers, "user_id"),
        "presence": state,
        "last_active_ts": _int_header(headers, "last_active_ts"),
    }
    if headers is not None and "status_msg" in headers:
        inner["status_msg"] = headers["status_msg"]
    return _message("presence", inner)
