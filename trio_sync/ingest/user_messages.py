"""The log messages of the per-user streams, parsed strictly.

Each has Dendrite's shape where Dendrite has one (``OutputClientData``,
``OutputTypingEvent``, ``OutputReceiptEvent``, ``OutputSendToDeviceEvent``, the key
server's ``DeviceMessage``, ``OutputNotificationData``, ``OutputPresenceData``) but
carries the content itself, so nothing else has to be asked to answer ``/sync``. Client
endpoints build the same messages and submit them in-process. Anything that does not fit
raises :class:`BadMessage`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .bad_message import BadMessage
from .fields import count, mapping, room_id, text, user_id

PRESENCE_STATES = ("online", "unavailable", "offline")
RECEIPT_TYPES = ("m.read", "m.read.private")


@dataclass(frozen=True, slots=True)
class ClientData:
    """Account data: global (``room_id`` ``""``) or for one room; ``content`` replaces."""

    user_id: str
    room_id: str
    type: str
    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TypingUpdate:
    """A user starts (until ``expire_ts``, wall-clock ms) or stops typing in a room."""

    room_id: str
    user_id: str
    typing: bool
    expire_ts: int | None


@dataclass(frozen=True, slots=True)
class Receipt:
    user_id: str
    room_id: str
    event_id: str
    type: str
    ts: int
    thread_id: str | None


@dataclass(frozen=True, slots=True)
class SendToDevice:
    """One to-device message; ``device_id`` ``*`` means every device of ``user_id``."""

    user_id: str
    device_id: str
    sender: str
    type: str
    content: dict[str, Any]
    sender_device: str
    txn_id: str | None


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A user's device keys (or cross-signing keys) changed."""

    user_id: str


@dataclass(frozen=True, slots=True)
class OneTimeKeyCounts:
    user_id: str
    device_id: str
    counts: dict[str, int]
    fallback_key_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotificationData:
    """Absolute unread counts of a user in a room (or in one thread of it)."""

    user_id: str
    room_id: str
    thread_id: str
    notification_count: int
    highlight_count: int


@dataclass(frozen=True, slots=True)
class Presence:
    """A user's presence; with ``device_id``, one device's part of it."""

    user_id: str
    presence: str
    status_msg: str | None
    last_active_ts: int | None
    device_id: str | None


UserMessage = (
    ClientData
    | TypingUpdate
    | Receipt
    | SendToDevice
    | KeyChange
    | OneTimeKeyCounts
    | NotificationData
    | Presence
)

_FRACTION = re.compile(r"(\.\d{6})\d+")


def _expire_ts(value: object) -> int | None:
    """Go's ``time.Time`` JSON (RFC 3339, nanoseconds) as wall-clock milliseconds."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadMessage("'ExpireTime' must be an RFC 3339 time")
    try:
        when = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        raise BadMessage("'ExpireTime' must be an RFC 3339 time") from None
    if when.tzinfo is None:
        raise BadMessage("'ExpireTime' must carry a time zone")
    return int(when.timestamp() * 1000)


def _client_data(body: dict[str, Any]) -> ClientData:
    room = body.get("room_id") or ""
    return ClientData(
        user_id=user_id(body),
        room_id=room_id(body) if room else "",
        type=text(body, "type", max_len=1000),
        content=mapping(body, "content"),
    )


def _typing(body: dict[str, Any]) -> TypingUpdate:
    event = mapping(body, "event")
    typing = event.get("typing")
    if not isinstance(typing, bool):
        raise BadMessage("'typing' must be a boolean")
    return TypingUpdate(
        room_id=room_id(event),
        user_id=user_id(event),
        typing=typing,
        expire_ts=_expire_ts(body.get("ExpireTime")) if typing else None,
    )


def _receipt(body: dict[str, Any]) -> Receipt:
    kind = body.get("type")
    if kind not in RECEIPT_TYPES:
        raise BadMessage(f"receipt 'type' must be one of {', '.join(RECEIPT_TYPES)}")
    event_id = text(body, "event_id", max_len=1000)
    if not event_id.startswith("$"):
        raise BadMessage("'event_id' must be an event ID")
    return Receipt(
        user_id=user_id(body),
        room_id=room_id(body),
        event_id=event_id,
        type=kind,
        ts=count(body, "timestamp", optional=True) or 0,
        thread_id=text(body, "thread_id", optional=True, max_len=1000),
    )


def _send_to_device(body: dict[str, Any]) -> SendToDevice:
    return SendToDevice(
        user_id=user_id(body),
        device_id=text(body, "device_id", max_len=1000),
        sender=user_id(body, "sender"),
        type=text(body, "type", max_len=1000),
        content=mapping(body, "content"),
        sender_device=text(body, "sender_device", optional=True, max_len=1000) or "",
        txn_id=text(body, "txn_id", optional=True, max_len=1000),
    )


def _key_change(body: dict[str, Any]) -> KeyChange:
    keys = body.get("DeviceKeys")
    if isinstance(keys, dict):
        return KeyChange(user_id(keys))
    signing = body.get("CrossSigningKeyUpdate")
    if isinstance(signing, dict) and isinstance(signing.get("signing_keys"), dict):
        return KeyChange(user_id(signing["signing_keys"]))
    raise BadMessage("key_change needs DeviceKeys.user_id or CrossSigningKeyUpdate")


def _one_time_keys(body: dict[str, Any]) -> OneTimeKeyCounts:
    counts = mapping(body, "one_time_key_counts")
    for algorithm in counts:
        count(counts, algorithm)
    fallback = body.get("unused_fallback_key_types", [])
    if not isinstance(fallback, list) or not all(isinstance(t, str) for t in fallback):
        raise BadMessage("'unused_fallback_key_types' must be a list of strings")
    return OneTimeKeyCounts(
        user_id(body), text(body, "device_id", max_len=1000), counts, tuple(fallback)
    )


def _notification_data(body: dict[str, Any]) -> NotificationData:
    return NotificationData(
        user_id=user_id(body),
        room_id=room_id(body),
        thread_id=text(body, "thread_id", optional=True, max_len=1000) or "",
        notification_count=count(body, "unread_notification_count"),
        highlight_count=count(body, "unread_highlight_count", optional=True) or 0,
    )


def _presence(body: dict[str, Any]) -> Presence:
    state = body.get("presence")
    if state not in PRESENCE_STATES:
        raise BadMessage(f"'presence' must be one of {', '.join(PRESENCE_STATES)}")
    status = body.get("status_msg")
    if status is not None and (not isinstance(status, str) or len(status) > 10_000):
        raise BadMessage("'status_msg' must be a string")
    return Presence(
        user_id=user_id(body),
        presence=state,
        status_msg=status,
        last_active_ts=count(body, "last_active_ts", optional=True),
        device_id=text(body, "device_id", optional=True, max_len=1000),
    )


PARSERS: dict[str, Callable[[dict[str, Any]], UserMessage]] = {
    "client_data": _client_data,
    "typing": _typing,
    "receipt": _receipt,
    "send_to_device": _send_to_device,
    "key_change": _key_change,
    "one_time_keys": _one_time_keys,
    "notification_data": _notification_data,
    "presence": _presence,
}


def parse_user_message(kind: str, body: dict[str, Any]) -> UserMessage:
    """Parse the body of a per-user stream message of type ``kind``."""
    return PARSERS[kind](body)
