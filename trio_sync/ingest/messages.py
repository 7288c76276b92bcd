"""The room server's output log, parsed strictly into typed messages.

The wire format is Dendrite's roomserver ``OutputEvent``: ``{"type": T, T: {...}}`` where the
inner field names are exactly Dendrite's, including the Go field names it writes without
JSON tags (``RedactedEventID``, ``RedactedBecause``, ``EventID``, ``RoomID`` ...). Anything
that does not fit raises :class:`BadMessage`, which ingest records and skips. The message
types of the per-user streams are parsed in :mod:`.user_messages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..client_format import stored_unsigned
from .bad_message import BadMessage as BadMessage
from .fields import integer, mapping, no_nul, room_id, text, user_id
from .user_messages import PARSERS, UserMessage, parse_user_message


@dataclass(frozen=True, slots=True)
class Pdu:
    """A room event as the room server sent it (federation format plus header fields)."""

    event_id: str
    room_id: str
    type: str
    sender: str
    state_key: str | None
    depth: int
    origin_server_ts: int
    room_version: str
    content: dict[str, Any]
    unsigned: dict[str, Any]
    redacts: str | None
    raw: dict[str, Any]

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    def client_dict(self, unsigned: dict[str, Any] | None = None) -> dict[str, Any]:
        """The event as clients see it (the spec's ClientEvent), with only the ``unsigned``
        keys of :data:`~trio_sync.client_format.STORED_UNSIGNED` (of ``unsigned`` if
        given, else the PDU's)."""
        # room_id first: /sync slices it off (client_format.without_room_id).
        event: dict[str, Any] = {
            "room_id": self.room_id,
            "content": self.content,
            "event_id": self.event_id,
            "origin_server_ts": self.origin_server_ts,
            "sender": self.sender,
            "type": self.type,
        }
        if self.state_key is not None:
            event["state_key"] = self.state_key
        if self.redacts is not None:
            event["redacts"] = self.redacts
        extra = stored_unsigned(self.unsigned if unsigned is None else unsigned)
        if extra:
            event["unsigned"] = extra
        return event

    def pdu_dict(self) -> dict[str, Any]:
        """The federation-format event, without the ``_``-prefixed header fields."""
        out = {k: v for k, v in self.raw.items() if not k.startswith("_")}
        out.setdefault("event_id", self.event_id)
        return out


@dataclass(frozen=True, slots=True)
class NewRoomEvent:
    event: Pdu
    adds_state_event_ids: tuple[str, ...]
    removes_state_event_ids: tuple[str, ...]
    rewrites_state: bool
    add_state_events: tuple[Pdu, ...]
    txn_session: int | None
    txn_id: str | None
    history_visibility: str | None
    #: The state at (before) the event differs from the room's state after this message
    #: by these: present at the event but not after, and present after but not at it.
    state_before_adds_event_ids: tuple[str, ...] = ()
    state_before_removes_event_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OldRoomEvent:
    event: Pdu


@dataclass(frozen=True, slots=True)
class NewInviteEvent:
    event: Pdu
    room_version: str


@dataclass(frozen=True, slots=True)
class RetireInviteEvent:
    event_id: str
    target_user_id: str | None
    retired_by_event_id: str | None
    membership: str


@dataclass(frozen=True, slots=True)
class RedactedEvent:
    redacted_event_id: str
    redacted_because: Pdu


@dataclass(frozen=True, slots=True)
class PurgeRoom:
    room_id: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A known message type that carries nothing a sync server keeps (peeks)."""

    type: str


Message = (
    NewRoomEvent
    | OldRoomEvent
    | NewInviteEvent
    | RetireInviteEvent
    | RedactedEvent
    | PurgeRoom
    | Ignored
    | UserMessage
)


def _ids(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadMessage(f"{key!r} must be a list of event IDs")
    return tuple(value)


#: Room versions whose room ID is the create event's reference hash (MSC4291): their
#: ``m.room.create`` PDU carries no ``room_id``.
HASHED_ROOM_ID_VERSIONS = frozenset({"12", "org.matrix.hydra.11"})


def _room_of(
    obj: dict[str, Any], event_id: str, etype: str, state_key: str | None, version: str
) -> str:
    """The event's room: its ``room_id``, or for the create event of a room version whose
    room ID is the create event's hash, ``!`` + the event ID without ``$``. A create event
    that names a room anyway (in ``room_id`` or a ``_room_id`` header) must name that one.
    """
    if not (etype == "m.room.create" and state_key == "" and version in HASHED_ROOM_ID_VERSIONS):
        return room_id(obj, "room_id")
    derived = "!" + event_id[1:]
    for key in ("room_id", "_room_id"):
        named = obj.get(key)
        if named is not None and named != derived:
            raise BadMessage(
                f"create event {event_id[:80]} makes room {derived[:80]}, "
                f"but {key!r} says {str(named)[:80]!r}"
            )
    return derived


def parse_pdu(obj: object, room_version: str | None = None) -> Pdu:
    """Parse a HeaderedEvent: the PDU plus ``_room_version`` and ``_event_id``."""
    if not isinstance(obj, dict):
        raise BadMessage("event must be an object")
    event_id = obj.get("_event_id", obj.get("event_id"))
    if not isinstance(event_id, str) or not event_id.startswith("$"):
        raise BadMessage("event has no valid _event_id")
    no_nul(event_id, "_event_id")
    version = obj.get("_room_version", room_version) or "1"
    if not isinstance(version, str):
        raise BadMessage("_room_version must be a string")
    state_key = obj.get("state_key")
    if state_key is not None and not isinstance(state_key, str):
        raise BadMessage("state_key must be a string")
    if state_key is not None:
        no_nul(state_key, "state_key")
    redacts = obj.get("redacts")
    if redacts is not None and not isinstance(redacts, str):
        raise BadMessage("redacts must be a string")
    unsigned = mapping(obj, "unsigned", optional=True)
    etype = text(obj, "type")
    content = mapping(obj, "content")
    membership = content.get("membership")
    if etype == "m.room.member" and isinstance(membership, str):
        no_nul(membership, "membership")
    return Pdu(
        event_id=event_id,
        room_id=_room_of(obj, event_id, etype, state_key, version),
        type=etype,
        sender=user_id(obj, "sender"),
        state_key=state_key,
        depth=integer(obj, "depth", 0),
        origin_server_ts=integer(obj, "origin_server_ts", 0),
        room_version=version,
        content=content,
        unsigned=dict(unsigned),
        redacts=redacts,
        raw=obj,
    )


def _new_room_event(body: dict[str, Any]) -> NewRoomEvent:
    event = parse_pdu(body.get("event"))
    txn = body.get("transaction_id")
    session: int | None = None
    txn_id: str | None = None
    if txn is not None:
        if not isinstance(txn, dict):
            raise BadMessage("transaction_id must be an object")
        session = integer(txn, "session_id", 0)
        txn_id = text(txn, "id")
    extra = body.get("AddStateEvents") or []
    if not isinstance(extra, list):
        raise BadMessage("AddStateEvents must be a list")
    visibility = body.get("history_visibility")
    if visibility is not None and not isinstance(visibility, str):
        raise BadMessage("history_visibility must be a string")
    rewrites = body.get("rewrites_state", False)
    if not isinstance(rewrites, bool):
        raise BadMessage("rewrites_state must be a boolean")
    return NewRoomEvent(
        event=event,
        adds_state_event_ids=_ids(body, "adds_state_event_ids"),
        removes_state_event_ids=_ids(body, "removes_state_event_ids"),
        rewrites_state=rewrites,
        add_state_events=tuple(parse_pdu(e, event.room_version) for e in extra),
        txn_session=session,
        txn_id=txn_id,
        history_visibility=visibility or None,
        state_before_adds_event_ids=_ids(body, "state_before_adds_event_ids"),
        state_before_removes_event_ids=_ids(body, "state_before_removes_event_ids"),
    )


def _new_invite_event(body: dict[str, Any]) -> NewInviteEvent:
    version = body.get("room_version")
    if version is not None and not isinstance(version, str):
        raise BadMessage("room_version must be a string")
    event = parse_pdu(body.get("event"), version)
    if event.type != "m.room.member" or event.content.get("membership") != "invite":
        raise BadMessage("new_invite_event must carry an m.room.member invite")
    if not event.state_key or not event.state_key.startswith("@"):
        raise BadMessage("invite event has no target user")
    return NewInviteEvent(event=event, room_version=version or event.room_version)


def _retire_invite_event(body: dict[str, Any]) -> RetireInviteEvent:
    membership = body.get("Membership") or "leave"
    if membership not in ("join", "leave", "ban"):
        raise BadMessage(f"unknown Membership {str(membership)[:40]!r}")
    return RetireInviteEvent(
        event_id=text(body, "EventID"),
        target_user_id=text(body, "TargetUserID", optional=True),
        retired_by_event_id=text(body, "RetiredByEventID", optional=True),
        membership=membership,
    )


def _redacted_event(body: dict[str, Any]) -> RedactedEvent:
    because = parse_pdu(body.get("RedactedBecause"))
    return RedactedEvent(redacted_event_id=text(body, "RedactedEventID"), redacted_because=because)


_PEEKS = ("new_peek", "retire_peek", "new_inbound_peek")


def parse_message(raw: bytes | str) -> Message:
    """Parse one log message; raise :class:`BadMessage` saying why it is unusable."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadMessage("message must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise BadMessage("message has no 'type'")
    if kind in _PEEKS:
        return Ignored(kind)
    body = doc.get(kind)
    if not isinstance(body, dict):
        raise BadMessage(f"message of type {kind[:40]!r} has no {kind[:40]!r} object")
    if kind == "new_room_event":
        return _new_room_event(body)
    if kind == "old_room_event":
        return OldRoomEvent(parse_pdu(body.get("event")))
    if kind == "new_invite_event":
        return _new_invite_event(body)
    if kind == "retire_invite_event":
        return _retire_invite_event(body)
    if kind == "redacted_event":
        return _redacted_event(body)
    if kind == "purge_room":
        return PurgeRoom(room_id(body, "RoomID"))
    if kind in PARSERS:
        return parse_user_message(kind, body)
    raise BadMessage(f"unknown message type {kind[:40]!r}")
