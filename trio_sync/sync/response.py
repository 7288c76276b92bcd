"""The ``/sync`` response being assembled, and its JSON form.

Stored events are already serialised in client format; they go into the body as
``orjson.Fragment`` without being parsed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from ..client_format import room_id_prefix, without_room_id
from ..filters import Filter
from ..tokens import StreamToken
from ..typing_state import TypingView
from .shared import WakeShare
from .timeline import Viewer

#: A device's ``(one-time-key counts, unused fallback key types)``; both None if unknown.
KeyCounts = tuple[dict[str, int] | None, list[str] | None]


def _fragments(events: list[str]) -> dict[str, Any]:
    return {"events": [orjson.Fragment(e) for e in events]}


def _room_fragments(events: list[str], prefix: str | None) -> list[orjson.Fragment]:
    """Room events as fragments; without their ``room_id`` unless ``prefix`` is None."""
    if prefix is None:
        return [orjson.Fragment(e) for e in events]
    return [orjson.Fragment(without_room_id(e, prefix)) for e in events]


@dataclass(slots=True)
class SyncContext:
    """Who is syncing, from where to where, and with which filter."""

    user_id: str
    device_id: str
    since: StreamToken | None
    now: StreamToken
    filter: Filter
    full_state: bool = False
    viewer: Viewer = field(default_factory=lambda: Viewer(""))
    #: Where room state goes: ``state`` (state before the timeline), or ``state_after`` /
    #: ``org.matrix.msc4222.state_after`` (state at its end) when the client asked for it.
    state_field: str = "state"
    #: Lazy-loaded member events sent to this device: room → user → (event ID, the PDU
    #: position of the response that carried it). One counts as known to the client only
    #: when that position is not after ``since`` (a retried request gets it again).
    sent_members: dict[str, dict[str, tuple[str, int]]] | None = None
    #: The typing state when the response's token was taken.
    typing: TypingView = field(default_factory=lambda: MappingProxyType({}))
    #: ``since`` holds a typing position of another process: send the typing state whole.
    typing_reset: bool = False
    #: Rooms the user is joined to at ``now`` that the filter allows, once looked up.
    joined: list[str] | None = None
    #: The users the user ignores, when known without a query.
    ignored_users: frozenset[str] | None = None
    #: No membership changed after ``since`` in the user's rooms, nor of the user itself.
    memberships_quiet: bool = False
    #: The device's one-time-key counts and fallback key types, when known without a query.
    key_counts: KeyCounts | None = None
    #: What this request shares with the others gathered in the same storage read.
    shared: WakeShare = field(default_factory=WakeShare)

    @property
    def state_after(self) -> bool:
        return self.state_field != "state"

    @property
    def incremental(self) -> bool:
        return self.since is not None


@dataclass(slots=True)
class RoomTimeline:
    events: list[str]
    limited: bool
    prev_batch: str

    def to_json(self, prefix: str | None = None) -> dict[str, Any]:
        return {
            "events": _room_fragments(self.events, prefix),
            "limited": self.limited,
            "prev_batch": self.prev_batch,
        }


@dataclass(slots=True)
class JoinedRoom:
    timeline: RoomTimeline
    state: list[str]
    #: ``state``, ``state_after`` or ``org.matrix.msc4222.state_after``.
    state_field: str = "state"
    summary: dict[str, Any] | None = None
    ephemeral: list[str] = field(default_factory=list)
    account_data: list[str] = field(default_factory=list)
    #: ``{"notification_count", "highlight_count"}`` when sent.
    unread: dict[str, int] | None = None
    #: thread root event ID -> counts, when the filter asks for them.
    unread_threads: dict[str, dict[str, int]] | None = None

    def to_json(self, room_id: str | None = None) -> dict[str, Any]:
        """The room's section; its events without ``room_id`` when ``room_id`` (theirs) is
        given."""
        prefix = None if room_id is None else room_id_prefix(room_id)
        out: dict[str, Any] = {
            "timeline": self.timeline.to_json(prefix),
            self.state_field: {"events": _room_fragments(self.state, prefix)},
        }
        if self.summary is not None:
            out["summary"] = self.summary
        if self.ephemeral:
            out["ephemeral"] = _fragments(self.ephemeral)
        if self.account_data:
            out["account_data"] = _fragments(self.account_data)
        if self.unread is not None:
            out["unread_notifications"] = self.unread
        if self.unread_threads is not None:
            out["unread_thread_notifications"] = self.unread_threads
        return out


@dataclass(slots=True)
class SyncResponse:
    """Every section of the response; a room appears in at most one of join/invite/leave."""

    next_batch: StreamToken
    #: Room events are in client format: they go out without ``room_id``
    #: (``ClientEventWithoutRoomID``). Federation-format events keep it.
    client_format: bool = True
    join: dict[str, JoinedRoom] = field(default_factory=dict)
    leave: dict[str, JoinedRoom] = field(default_factory=dict)
    invite: dict[str, list[str]] = field(default_factory=dict)
    knock: dict[str, list[str]] = field(default_factory=dict)
    #: Where joined rooms put their state (see :attr:`SyncContext.state_field`).
    state_field: str = "state"
    #: Rooms the user newly joined in this incremental response (sent with full state):
    #: the providers of per-room streams send their whole current state for these.
    fresh_rooms: set[str] = field(default_factory=set)
    account_data: list[str] = field(default_factory=list)
    presence: list[str] = field(default_factory=list)
    to_device: list[str] = field(default_factory=list)
    device_lists_changed: list[str] = field(default_factory=list)
    device_lists_left: list[str] = field(default_factory=list)
    #: Current key counts of the syncing device (sent whenever known; not news by itself).
    one_time_keys_count: dict[str, int] | None = None
    unused_fallback_key_types: list[str] | None = None

    def has_room(self, room_id: str) -> bool:
        return (
            room_id in self.join
            or room_id in self.leave
            or room_id in self.invite
            or room_id in self.knock
        )

    def drop_shadowed_invites(self) -> None:
        """Drop the invites of rooms that are also joined, left or knocked on: a room is
        in one section only, and the others say where the user is now."""
        for room_id in [
            r for r in self.invite if r in self.join or r in self.leave or r in self.knock
        ]:
            del self.invite[room_id]

    def put_joined(self, room_id: str, room: JoinedRoom) -> None:
        """Make ``room`` the ``rooms.join`` section of ``room_id``, keeping the ephemeral
        events, account data and unread counts other streams already gave it."""
        had = self.join.get(room_id)
        if had is not None:
            room.ephemeral[:0] = had.ephemeral
            room.account_data[:0] = had.account_data
            if had.unread is not None:
                room.unread = had.unread
            if had.unread_threads is not None:
                room.unread_threads = had.unread_threads
        self.join[room_id] = room

    def joined_room(self, room_id: str) -> JoinedRoom:
        """The ``rooms.join`` section of ``room_id``, added (with an empty timeline) if the
        room has only ephemeral events, account data or unread counts to show."""
        room = self.join.get(room_id)
        if room is None:
            timeline = RoomTimeline([], False, str(self.next_batch))
            room = self.join[room_id] = JoinedRoom(timeline, [], self.state_field)
        return room

    def is_empty(self) -> bool:
        """True when nothing in it would change a client's view."""
        return not (
            self.join
            or self.leave
            or self.invite
            or self.knock
            or self.account_data
            or self.presence
            or self.to_device
            or self.device_lists_changed
            or self.device_lists_left
        )

    def to_json(self) -> dict[str, Any]:
        rooms: dict[str, Any] = {}
        strip = self.client_format
        if self.join:
            rooms["join"] = {r: room.to_json(r if strip else None) for r, room in self.join.items()}
        if self.invite:
            rooms["invite"] = {
                r: {"invite_state": {"events": [orjson.Fragment(e) for e in events]}}
                for r, events in self.invite.items()
            }
        if self.knock:
            rooms["knock"] = {
                r: {"knock_state": {"events": [orjson.Fragment(e) for e in events]}}
                for r, events in self.knock.items()
            }
        if self.leave:
            rooms["leave"] = {
                r: room.to_json(r if strip else None) for r, room in self.leave.items()
            }
        body: dict[str, Any] = {"next_batch": str(self.next_batch)}
        if rooms:
            body["rooms"] = rooms
        if self.account_data:
            body["account_data"] = _fragments(self.account_data)
        if self.presence:
            body["presence"] = _fragments(self.presence)
        if self.to_device:
            body["to_device"] = _fragments(self.to_device)
        if self.device_lists_changed or self.device_lists_left:
            body["device_lists"] = {
                "changed": self.device_lists_changed,
                "left": self.device_lists_left,
            }
        if self.one_time_keys_count is not None:
            body["device_one_time_keys_count"] = self.one_time_keys_count
        if self.unused_fallback_key_types is not None:
            body["device_unused_fallback_key_types"] = self.unused_fallback_key_types
        return body

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())
