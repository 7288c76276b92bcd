"""Events a homeserver already made, as the room server's output log (Dendrite's
``OutputEvent`` ``new_room_event`` messages) that trio-sync ingests.

For linear room histories only: each event follows the previous one of its room (it is the
room's one latest event), and a state event replaces the room's state entry of the same
``(type, state_key)``: ``adds_state_event_ids`` is the event, ``removes_state_event_ids``
the entry it replaces, if any. :class:`trio_sync.roomlog.RoomLog` does the same for events
it makes up.
"""

from __future__ import annotations

from typing import Any


class LinearHistory:
    """Turns events, given in their rooms' order, into ``new_room_event`` messages."""

    def __init__(self) -> None:
        self._state: dict[str, dict[tuple[str, str], str]] = {}

    def message(
        self, event_id: str, room_id: str, room_version: str, pdu: dict[str, Any]
    ) -> dict[str, Any]:
        """The message for ``pdu`` (the federation-format event without its ID), the next
        event of ``room_id``. The PDU is sent as it is: the create event of a room version
        whose room ID is the event's hash names no room."""
        state = self._state.setdefault(room_id, {})
        event = {**pdu, "_room_version": room_version, "_event_id": event_id}
        body: dict[str, Any] = {"event": event, "latest_event_ids": [event_id]}
        state_key = pdu.get("state_key")
        if state_key is not None:
            replaced = state.get((pdu["type"], state_key))
            state[(pdu["type"], state_key)] = event_id
            body["adds_state_event_ids"] = [event_id]
            if replaced is not None:
                body["removes_state_event_ids"] = [replaced]
        return {"type": "new_room_event", "new_room_event": body}
