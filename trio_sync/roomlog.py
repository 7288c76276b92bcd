"""Writing room-server output logs for linear room histories.

Used by ``trio-sync demo``, the benchmarks and the tests: a :class:`RoomLog` plays the
room server for rooms whose history is a single chain, producing the same
``new_room_event`` messages (with ``adds_state_event_ids`` / ``removes_state_event_ids``)
a Dendrite room server writes.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson

ROOM_VERSION = "10"


@dataclass
class _Room:
    room_id: str
    depth: int = 0
    latest: str | None = None
    state: dict[tuple[str, str], str] = field(default_factory=dict)


class RoomLog:
    """Builds output-log messages for rooms with linear histories on one server."""

    def __init__(self, server_name: str = "example.org", start_ts: int = 1_700_000_000_000):
        self.server_name = server_name
        self._rooms: dict[str, _Room] = {}
        self._ts = itertools.count(start_ts, 1000)
        self._n = itertools.count(1)

    def _event_id(self, body: dict[str, Any]) -> str:
        digest = hashlib.sha256(orjson.dumps(body) + str(next(self._n)).encode()).digest()
        return "$" + digest[:24].hex()

    def current_state(self, room_id: str) -> dict[tuple[str, str], str]:
        """(type, state_key) → event ID of the room's current state."""
        return dict(self._rooms[room_id].state)

    def event(
        self,
        room_id: str,
        sender: str,
        type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        txn_id: str | None = None,
    ) -> dict[str, Any]:
        """The ``new_room_event`` message for one more event at the end of ``room_id``."""
        room = self._rooms.setdefault(room_id, _Room(room_id))
        room.depth += 1
        pdu: dict[str, Any] = {
            "room_id": room_id,
            "sender": sender,
            "type": type,
            "content": content,
            "depth": room.depth,
            "origin": self.server_name,
            "origin_server_ts": next(self._ts),
            "prev_events": [room.latest] if room.latest else [],
            "auth_events": [],
            "hashes": {"sha256": "x"},
            "signatures": {},
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        event_id = self._event_id(pdu)
        pdu["_room_version"] = ROOM_VERSION
        pdu["_event_id"] = event_id
        room.latest = event_id
        body: dict[str, Any] = {"event": pdu, "latest_event_ids": [event_id]}
        if state_key is not None:
            old = room.state.get((type, state_key))
            room.state[(type, state_key)] = event_id
            body["adds_state_event_ids"] = [event_id]
            if old:
                body["removes_state_event_ids"] = [old]
        if txn_id is not None:
            body["transaction_id"] = {"session_id": 1, "id": txn_id}
        return {"type": "new_room_event", "new_room_event": body}

    def drop_state(self, message: dict[str, Any], *keys: tuple[str, str]) -> dict[str, Any]:
        """``message`` (a ``new_room_event`` of this log) made to also remove the state
        entries ``keys`` without replacing them, as a room server's state reset does."""
        body = message["new_room_event"]
        room = self._rooms[body["event"]["room_id"]]
        removes = body.setdefault("removes_state_event_ids", [])
        for key in keys:
            removes.append(room.state.pop(key))
        return message

    def create_room(
        self, room_id: str, creator: str, name: str | None = None
    ) -> list[dict[str, Any]]:
        """The usual first events of a public-chat room created by ``creator``."""
        out = [
            self.event(room_id, creator, "m.room.create", {"room_version": ROOM_VERSION}, ""),
            self.member(room_id, creator, "join"),
            self.event(
                room_id,
                creator,
                "m.room.power_levels",
                {"users": {creator: 100}, "users_default": 0},
                "",
            ),
            self.event(room_id, creator, "m.room.join_rules", {"join_rule": "public"}, ""),
            self.event(
                room_id, creator, "m.room.history_visibility", {"history_visibility": "shared"}, ""
            ),
        ]
        if name:
            out.append(self.event(room_id, creator, "m.room.name", {"name": name}, ""))
        return out

    def member(
        self,
        room_id: str,
        user_id: str,
        membership: str,
        sender: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A membership event for ``user_id`` (sent by ``sender``, default the user)."""
        content = {"membership": membership, **extra}
        return self.event(room_id, sender or user_id, "m.room.member", content, user_id)

    def message(self, room_id: str, sender: str, body: str, **kw: Any) -> dict[str, Any]:
        """An ``m.room.message`` text event."""
        return self.event(
            room_id, sender, "m.room.message", {"msgtype": "m.text", "body": body}, **kw
        )


def dumps_lines(messages: list[dict[str, Any]]) -> bytes:
    """Messages as a JSON-lines log."""
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)
