"""Building related events (edits, thread replies, references, reactions) and reading the
relations endpoints, for the relations tests."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .rooms_support import Message, Rooms, pdu_of

V1 = "/_matrix/client/v1"


def related(
    rooms: Rooms,
    room_id: str,
    sender: str,
    rel_type: str,
    parent: str,
    body: str = "",
    etype: str = "m.room.message",
    **content: Any,
) -> Message:
    """An event relating to ``parent`` with ``rel_type``."""
    full: dict[str, Any] = {"msgtype": "m.text", "body": body, **content}
    full["m.relates_to"] = {"rel_type": rel_type, "event_id": parent}
    return rooms.log.event(room_id, sender, etype, full)


def edit(rooms: Rooms, room_id: str, sender: str, parent: str, body: str, **kw: Any) -> Message:
    """A valid ``m.replace`` of ``parent`` (with ``m.new_content``)."""
    new = {"msgtype": "m.text", "body": body}
    return related(
        rooms, room_id, sender, "m.replace", parent, f"* {body}", **{"m.new_content": new}, **kw
    )


def reply(rooms: Rooms, room_id: str, sender: str, root: str, body: str) -> Message:
    """A thread reply to ``root``."""
    return related(rooms, room_id, sender, "m.thread", root, body)


def reaction(rooms: Rooms, room_id: str, sender: str, parent: str, key: str) -> Message:
    """An ``m.reaction`` (``m.annotation``) to ``parent``."""
    return rooms.log.event(
        room_id,
        sender,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": key}},
    )


def at_ts(message: Message, ts: int) -> Message:
    """``message`` with its ``origin_server_ts`` set to ``ts``."""
    pdu_of(message)["origin_server_ts"] = ts
    return message


def bundle(event: dict[str, Any]) -> dict[str, Any]:
    """The ``unsigned.m.relations`` of a served event ({} when it has none)."""
    value: dict[str, Any] = event.get("unsigned", {}).get("m.relations", {})
    return value


async def relations(
    rooms: Rooms, user_id: str, room_id: str, parent: str, *path: str, **params: Any
) -> dict[str, Any]:
    """``GET /relations/{parent}[/relType[/eventType]]``; asserts 200."""
    tail = "".join("/" + quote(p, safe="") for p in (parent, *path))
    r = await rooms.http.get(
        f"{V1}/rooms/{quote(room_id)}/relations{tail}",
        params={k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()},
        headers={"Authorization": f"Bearer {rooms.tokens[user_id]}"},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def threads(rooms: Rooms, user_id: str, room_id: str, **params: Any) -> dict[str, Any]:
    """``GET /threads``; asserts 200."""
    r = await rooms.http.get(
        f"{V1}/rooms/{quote(room_id)}/threads",
        params={k: str(v) for k, v in params.items()},
        headers={"Authorization": f"Bearer {rooms.tokens[user_id]}"},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
