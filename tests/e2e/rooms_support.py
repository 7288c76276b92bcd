"""Shared set-up for the room feature tests: users with devices, a RoomLog to feed rooms,
the room read endpoints over HTTP, and matrix-nio checks of their bodies."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import nio  # type: ignore[import-untyped, unused-ignore]
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, SERVER, auth, encode_params, event_id, sync
from .support import call

ROOM = f"!lobby:{SERVER}"
OTHER = f"!other:{SERVER}"
DAVE = f"@dave:{SERVER}"
CLIENT = "/_matrix/client/v3"
#: The (type, state_key) of every state entry of ROOM (and OTHER) as made by make_rooms.
ROOM_STATE = {
    ("m.room.create", ""),
    ("m.room.member", BOB),
    ("m.room.member", ALICE),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    ("m.room.history_visibility", ""),
    ("m.room.name", ""),
}

Message = dict[str, Any]


REMOTE_ROOM = "!faraway:remote.org"
RITA = "@rita:remote.org"


def stripped_state(etype: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": etype, "state_key": "", "sender": RITA, "content": content}


def remote_invite(
    invitee: str,
    room_id: str = REMOTE_ROOM,
    event_id: str = "$invite-from-remote",
    name: str = "Far away",
) -> tuple[str, dict[str, Any]]:
    """A ``new_invite_event`` for a room this server is not in, with its invite state."""
    stripped = [
        stripped_state("m.room.create", {"room_version": "10"}),
        stripped_state("m.room.name", {"name": name}),
        stripped_state("m.room.join_rules", {"join_rule": "invite"}),
    ]
    pdu = {
        "_event_id": event_id,
        "_room_version": "10",
        "room_id": room_id,
        "sender": RITA,
        "type": "m.room.member",
        "state_key": invitee,
        "content": {"membership": "invite"},
        "depth": 7,
        "origin": "remote.org",
        "origin_server_ts": 1_700_000_500_000,
        "prev_events": [],
        "auth_events": [],
        "hashes": {"sha256": "x"},
        "signatures": {},
        "unsigned": {"invite_room_state": stripped},
    }
    message = {"type": "new_invite_event", "new_invite_event": {"event": pdu, "room_version": "10"}}
    return event_id, message


def user(n: int) -> str:
    return f"@user{n}:{SERVER}"


def pdu_of(message: Message) -> dict[str, Any]:
    """The PDU inside a RoomLog ``new_room_event`` message (mutable)."""
    pdu: dict[str, Any] = message["new_room_event"]["event"]
    return pdu


def visibility(log: RoomLog, room_id: str, sender: str, setting: str) -> Message:
    """An ``m.room.history_visibility`` change to ``setting``."""
    return log.event(
        room_id, sender, "m.room.history_visibility", {"history_visibility": setting}, ""
    )


def redaction(log: RoomLog, room_id: str, sender: str, target: str) -> Message:
    """The ``new_room_event`` of an ``m.room.redaction`` of ``target`` (room version 10:
    ``redacts`` at the top level)."""
    message = log.event(room_id, sender, "m.room.redaction", {"reason": "spam"})
    pdu_of(message)["redacts"] = target
    return message


def redacted_event(target: str, because: Message) -> Message:
    """The room server's notice that ``target`` was redacted by the event of ``because``."""
    return {
        "type": "redacted_event",
        "redacted_event": {"RedactedEventID": target, "RedactedBecause": pdu_of(because)},
    }


def by_key(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """State events by (type, state_key)."""
    return {(e["type"], e["state_key"]): e for e in events}


def member_keys(events: list[dict[str, Any]]) -> set[str]:
    """The state keys of the ``m.room.member`` events among ``events``."""
    return {e["state_key"] for e in events if e["type"] == "m.room.member"}


# --- matrix-nio's view of the read endpoints ---------------------------------------------


def _no_bad_events(events: list[Any], where: str) -> None:
    bad = [e for e in events if isinstance(e, nio.BadEvent | nio.UnknownBadEvent)]
    assert not bad, f"matrix-nio could not parse events of {where}: {bad}"


def nio_messages(body: dict[str, Any], room_id: str) -> None:
    parsed = nio.RoomMessagesResponse.from_dict(copy.deepcopy(body), room_id)
    assert isinstance(parsed, nio.RoomMessagesResponse), f"matrix-nio rejected it: {parsed}"
    _no_bad_events(parsed.chunk, "/messages")


def nio_context(body: dict[str, Any], room_id: str) -> None:
    parsed = nio.RoomContextResponse.from_dict(copy.deepcopy(body), room_id)
    assert isinstance(parsed, nio.RoomContextResponse), f"matrix-nio rejected it: {parsed}"
    _no_bad_events([parsed.event, *parsed.events_before, *parsed.events_after], "/context")
    _no_bad_events(parsed.state, "/context state")


def nio_event(body: dict[str, Any]) -> None:
    parsed = nio.RoomGetEventResponse.from_dict(copy.deepcopy(body))
    assert isinstance(parsed, nio.RoomGetEventResponse), f"matrix-nio rejected it: {parsed}"
    _no_bad_events([parsed.event], "/event")


def nio_members(body: dict[str, Any]) -> None:
    chunk = body["chunk"]
    assert isinstance(chunk, list)
    parsed = [nio.Event.parse_event(copy.deepcopy(e)) for e in chunk]
    _no_bad_events(parsed, "/members")
    assert all(isinstance(e, nio.RoomMemberEvent) for e in parsed)


def nio_joined_members(body: dict[str, Any], room_id: str) -> None:
    parsed = nio.JoinedMembersResponse.from_dict(copy.deepcopy(body), room_id)
    assert isinstance(parsed, nio.JoinedMembersResponse), f"matrix-nio rejected it: {parsed}"


def nio_joined_rooms(body: dict[str, Any]) -> None:
    parsed = nio.JoinedRoomsResponse.from_dict(copy.deepcopy(body))
    assert isinstance(parsed, nio.JoinedRoomsResponse), f"matrix-nio rejected it: {parsed}"


# --- the world -----------------------------------------------------------------------------


@dataclass
class Rooms:
    """Users with devices, a RoomLog to play the room server, and the client endpoints."""

    service: Service
    http: httpx.AsyncClient
    log: RoomLog = field(default_factory=lambda: RoomLog(SERVER))
    tokens: dict[str, str] = field(default_factory=dict)

    async def device(
        self, user_id: str, device_id: str | None = None, session_id: int | None = None
    ) -> str:
        """Register a device (with the room server's ``session_id`` for it, if given) and
        return its token; the first device of a user is its default for the helpers."""
        device_id = device_id or f"{user_id[1:].split(':')[0].upper()}DEV"
        token = await self.service.add_device(user_id, device_id, session_id=session_id)
        self.tokens.setdefault(user_id, token)
        return token

    async def ingest(self, *messages: Message) -> list[str]:
        """Ingest ``new_room_event`` messages; their event IDs."""
        await self.ingest_raw(*messages)
        return [event_id(m) for m in messages]

    async def ingest_raw(self, *messages: Message) -> None:
        applied = await self.service.ingest(list(messages))
        assert applied.rejected == 0

    async def ignore(self, user_id: str, *ignored: str) -> None:
        """``user_id`` sets its ``m.ignored_user_list`` to ``ignored``, as a client does."""
        await call(
            self.http,
            "PUT",
            f"/user/{user_id}/account_data/m.ignored_user_list",
            self.tokens[user_id],
            {"ignored_users": {u: {} for u in ignored}},
        )

    async def room(
        self,
        room_id: str = ROOM,
        creator: str = BOB,
        setting: str = "shared",
        name: str | None = "Lobby",
    ) -> list[str]:
        """Create a room whose history visibility is ``setting`` from its creation on."""
        messages = self.log.create_room(room_id, creator, name=name)
        hv = pdu_of(messages[4])
        assert hv["type"] == "m.room.history_visibility"
        hv["content"] = {"history_visibility": setting}
        return await self.ingest(*messages)

    async def join(self, room_id: str, user_id: str, **content: Any) -> str:
        (eid,) = await self.ingest(self.log.member(room_id, user_id, "join", **content))
        return eid

    async def say(self, room_id: str, sender: str, *bodies: str) -> list[str]:
        return await self.ingest(*(self.log.message(room_id, sender, b) for b in bodies))

    async def sync(self, user_id: str, **params: Any) -> dict[str, Any]:
        return await sync(self.http, self.tokens[user_id], **params)

    async def now(self, user_id: str) -> str:
        """The user's current ``next_batch`` (from a complete sync)."""
        return str((await self.sync(user_id))["next_batch"])

    # --- read endpoints ------------------------------------------------------------------

    async def get(self, user_id: str, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            CLIENT + path, params=encode_params(params), headers=auth(self.tokens[user_id])
        )

    async def messages(self, user_id: str, room_id: str, **params: Any) -> dict[str, Any]:
        """``/messages`` (``dir`` defaults to ``b``); asserts 200 and nio's acceptance."""
        params.setdefault("dir", "b")
        r = await self.get(user_id, f"/rooms/{quote(room_id)}/messages", **params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_messages(body, room_id)
        return body

    async def page_all(self, user_id: str, room_id: str, **params: Any) -> list[str]:
        """Every event ID ``/messages`` gives following ``end`` until it is omitted."""
        out: list[str] = []
        for _ in range(100):
            body = await self.messages(user_id, room_id, **params)
            out += [e["event_id"] for e in body["chunk"]]
            if "end" not in body:
                return out
            assert body["chunk"], "an empty page must not carry an end token"
            params["from"] = body["end"]
        pytest.fail("/messages never stopped giving an end token")

    async def context(self, user_id: str, room_id: str, eid: str, **params: Any) -> dict[str, Any]:
        r = await self.get(user_id, f"/rooms/{quote(room_id)}/context/{quote(eid)}", **params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_context(body, room_id)
        return body

    async def event(self, user_id: str, room_id: str, eid: str) -> dict[str, Any]:
        r = await self.get(user_id, f"/rooms/{quote(room_id)}/event/{quote(eid)}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_event(body)
        return body

    async def members(self, user_id: str, room_id: str, **params: Any) -> dict[str, Any]:
        r = await self.get(user_id, f"/rooms/{quote(room_id)}/members", **params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_members(body)
        return body

    async def joined_members(self, user_id: str, room_id: str) -> dict[str, Any]:
        r = await self.get(user_id, f"/rooms/{quote(room_id)}/joined_members")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_joined_members(body, room_id)
        return body

    async def joined_rooms(self, user_id: str) -> list[str]:
        r = await self.get(user_id, "/joined_rooms")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        nio_joined_rooms(body)
        return list(body["joined_rooms"])

    async def error(
        self, user_id: str, path: str, status: int, errcode: str, **params: Any
    ) -> None:
        """GET ``path`` and expect a Matrix error."""
        r = await self.get(user_id, path, **params)
        assert r.status_code == status, r.text
        assert r.json()["errcode"] == errcode, r.text


def messages_path(room_id: str) -> str:
    return f"/rooms/{quote(room_id)}/messages"


def event_path(room_id: str, eid: str) -> str:
    return f"/rooms/{quote(room_id)}/event/{quote(eid)}"


def context_path(room_id: str, eid: str) -> str:
    return f"/rooms/{quote(room_id)}/context/{quote(eid)}"


async def make_rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    """Alice, Bob and Carol with a device each; no rooms yet."""
    w = Rooms(service, http)
    for u in (ALICE, BOB, CAROL):
        await w.device(u)
    return w


async def lobby_of_three(service: Service, http: httpx.AsyncClient) -> Rooms:
    """:func:`make_rooms` with Bob's ``ROOM`` (``shared`` history) joined by Alice and
    Carol."""
    w = await make_rooms(service, http)
    await w.room()
    await w.join(ROOM, ALICE)
    await w.join(ROOM, CAROL)
    return w
