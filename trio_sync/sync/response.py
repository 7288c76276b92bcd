"""The ``/sync`` response being assembled, and its JSON form.

Stored events are already serialised in client format; they go into the body as
``orjson.Fragment`` without being parsed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from ..filters import Filter
from ..tokens import StreamToken
from .timeline import Viewer


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

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [orjson.Fragment(e) for e in self.events],
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

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "timeline": self.timeline.to_json(),
            self.state_field: {"events": [orjson.Fragment(e) for e in self.state]},
        }
        if self.summary is not None:
            body["summary"] = self.summary
        return body


@dataclass(slots=True)
class SyncResponse:
    """Every section of the response; a room appears in at most one of join/invite/leave."""

    next_batch: StreamToken
    join: dict[str, JoinedRoom] = field(default_factory=dict)
    leave: dict[str, JoinedRoom] = field(default_factory=dict)
    invite: dict[str, list[str]] = field(default_factory=dict)
    knock: dict[str, list[str]] = field(default_factory=dict)

    def has_room(self, room_id: str) -> bool:
        return (
            room_id in self.join
            or room_id in self.leave
            or room_id in self.invite
            or room_id in self.knock
        )

    def is_empty(self) -> bool:
        """True when nothing in it would change a client's view."""
        return not (self.join or self.leave or self.invite or self.knock)

    def to_json(self) -> dict[str, Any]:
        rooms: dict[str, Any] = {}
        if self.join:
            rooms["join"] = {r: room.to_json() for r, room in self.join.items()}
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
            rooms["leave"] = {r: room.to_json() for r, room in self.leave.items()}
        body: dict[str, Any] = {"next_batch": str(self.next_batch)}
        if rooms:
            body["rooms"] = rooms
        return body

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())
