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


@dataclass(slots=True)
class SyncContext:
    """Who is syncing, from where to where, and with which filter."""

    user_id: str
    device_id: str
    since: StreamToken | None
    now: StreamToken
    filter: Filter
    full_state: bool = False

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

    def to_json(self) -> dict[str, Any]:
        return {
            "timeline": self.timeline.to_json(),
            "state": {"events": [orjson.Fragment(e) for e in self.state]},
        }


@dataclass(slots=True)
class SyncResponse:
    """Every section of the response; a room appears in at most one of join/invite/leave."""

    next_batch: StreamToken
    join: dict[str, JoinedRoom] = field(default_factory=dict)
    leave: dict[str, JoinedRoom] = field(default_factory=dict)
    invite: dict[str, list[str]] = field(default_factory=dict)

    def has_room(self, room_id: str) -> bool:
        return room_id in self.join or room_id in self.leave or room_id in self.invite

    def is_empty(self) -> bool:
        """True when nothing in it would change a client's view."""
        return not (self.join or self.leave or self.invite)

    def to_json(self) -> dict[str, Any]:
        rooms: dict[str, Any] = {}
        if self.join:
            rooms["join"] = {r: room.to_json() for r, room in self.join.items()}
        if self.invite:
            rooms["invite"] = {
                r: {"invite_state": {"events": [orjson.Fragment(e) for e in events]}}
                for r, events in self.invite.items()
            }
        if self.leave:
            rooms["leave"] = {r: room.to_json() for r, room in self.leave.items()}
        body: dict[str, Any] = {"next_batch": str(self.next_batch)}
        if rooms:
            body["rooms"] = rooms
        return body

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json())
