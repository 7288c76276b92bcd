"""Rooms moving between join/invite/leave in incremental and complete syncs; filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import (
    ALICE,
    BOB,
    SERVER,
    auth,
    event_id,
    rooms_of,
    state_ids,
    state_keys,
    sync,
    timeline_ids,
)

ROOM = f"!lobby:{SERVER}"
OTHER = f"!other:{SERVER}"
ROOM_STATE = {
    ("m.room.create", ""),
    ("m.room.member", BOB),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    ("m.room.history_visibility", ""),
    ("m.room.name", ""),
}


@dataclass
class World:
    """Bob's room "Lobby", Alice and Bob with devices, and a RoomLog to continue it."""

    service: Service
    http: httpx.AsyncClient
    log: RoomLog = field(default_factory=lambda: RoomLog(SERVER))
    alice: str = ""
    bob: str = ""

    async def ingest(self, *messages: dict[str, Any]) -> list[str]:
        applied = await self.service.ingest(list(messages))
        assert applied.rejected == 0
        return [event_id(m) for m in messages]

    async def alice_sync(self, **params: Any) -> dict[str, Any]:
        return await sync(self.http, self.alice, **params)

    async def alice_now(self) -> str:
        """Alice's current ``next_batch`` (from a complete sync)."""
        return str((await self.alice_sync())["next_batch"])

    async def alice_joins(self) -> str:
        (join,) = await self.ingest(self.log.member(ROOM, ALICE, "join"))
        return join


@pytest.fixture
async def world(service: Service, http: httpx.AsyncClient) -> World:
    w = World(service, http)
    w.alice = await service.add_device(ALICE, "ALICEPHONE")
    w.bob = await service.add_device(BOB, "BOBPHONE")
    await w.ingest(*w.log.create_room(ROOM, BOB, name="Lobby"))
    return w


# --- invites ----------------------------------------------------------------------------


async def test_invite_appears_with_invite_state(world: World) -> None:
    since = await world.alice_now()
    (invite,) = await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "invite") == {ROOM}
    assert rooms_of(body, "join") == set() and rooms_of(body, "leave") == set()
    events = body["rooms"]["invite"][ROOM]["invite_state"]["events"]
    by_key = {(e["type"], e["state_key"]): e for e in events}
    member = by_key[("m.room.member", ALICE)]
    assert member["content"]["membership"] == "invite"
    assert member["sender"] == BOB
    assert by_key[("m.room.name", "")]["content"] == {"name": "Lobby"}
    assert ("m.room.create", "") in by_key
    assert invite  # the invite event was accepted


async def test_invite_is_in_complete_sync_until_answered(world: World) -> None:
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    body = await world.alice_sync()
    assert rooms_of(body, "invite") == {ROOM}
    await world.alice_joins()
    body = await world.alice_sync()
    assert rooms_of(body, "invite") == set()
    assert rooms_of(body, "join") == {ROOM}


async def test_rejected_invite_shows_leave_event_only(world: World) -> None:
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    since = await world.alice_now()
    await world.ingest(world.log.message(ROOM, BOB, "are you coming?"))
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    await world.ingest(world.log.message(ROOM, BOB, "pity"))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "leave") == {ROOM}
    assert rooms_of(body, "invite") == set() and rooms_of(body, "join") == set()
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert state_ids(body, "leave", ROOM) == []
    # And the room is gone from the next complete sync.
    body = await world.alice_sync()
    assert rooms_of(body, "invite") == rooms_of(body, "leave") == rooms_of(body, "join") == set()


async def test_invite_and_rejection_in_one_range(world: World) -> None:
    since = await world.alice_now()
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "invite") == set() and rooms_of(body, "join") == set()
    if ROOM in rooms_of(body, "leave"):
        assert timeline_ids(body, "leave", ROOM) == [leave]


async def test_withdrawn_invite_shows_leave_event_only(world: World) -> None:
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    since = await world.alice_now()
    (kick,) = await world.ingest(world.log.member(ROOM, ALICE, "leave", sender=BOB))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "leave") == {ROOM}
    assert rooms_of(body, "invite") == set()
    assert timeline_ids(body, "leave", ROOM) == [kick]


async def test_rejected_invite_with_include_leave_in_complete_sync(world: World) -> None:
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    await world.ingest(world.log.message(ROOM, BOB, "never seen by alice"))
    body = await world.alice_sync(filter={"room": {"include_leave": True}})
    assert rooms_of(body, "leave") == {ROOM}
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert state_ids(body, "leave", ROOM) == []


# --- joins ------------------------------------------------------------------------------


async def test_join_sends_full_state(world: World) -> None:
    since = await world.alice_now()
    join = await world.alice_joins()
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "join") == {ROOM}
    assert timeline_ids(body, "join", ROOM) == [join]
    assert state_keys(body, "join", ROOM) == ROOM_STATE


async def test_join_after_invite_moves_room_from_invite_to_join(world: World) -> None:
    await world.ingest(world.log.member(ROOM, ALICE, "invite", sender=BOB))
    since = await world.alice_now()
    join = await world.alice_joins()
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "join") == {ROOM}
    assert rooms_of(body, "invite") == set() and rooms_of(body, "leave") == set()
    assert timeline_ids(body, "join", ROOM) == [join]
    # Full state, including the invite Alice's join replaced.
    assert state_keys(body, "join", ROOM) == ROOM_STATE | {("m.room.member", ALICE)}


async def test_join_with_limited_timeline_still_sends_full_state(world: World) -> None:
    since = await world.alice_now()
    await world.alice_joins()
    sent = await world.ingest(*(world.log.message(ROOM, BOB, f"m{n}") for n in range(3)))
    body = await world.alice_sync(since=since, filter={"room": {"timeline": {"limit": 2}}})
    room = body["rooms"]["join"][ROOM]
    assert timeline_ids(body, "join", ROOM) == sent[1:]
    assert room["timeline"]["limited"] is True
    assert state_keys(body, "join", ROOM) == ROOM_STATE | {("m.room.member", ALICE)}


async def test_displayname_change_is_not_a_new_join(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    (rename,) = await world.ingest(world.log.member(ROOM, ALICE, "join", displayname="Alice"))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "join") == {ROOM}
    assert timeline_ids(body, "join", ROOM) == [rename]
    assert state_ids(body, "join", ROOM) == []
    event = body["rooms"]["join"][ROOM]["timeline"]["events"][0]
    assert event["content"] == {"membership": "join", "displayname": "Alice"}


async def test_displayname_change_before_limited_timeline_is_only_a_state_delta(
    world: World,
) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    (rename,) = await world.ingest(world.log.member(ROOM, ALICE, "join", displayname="A."))
    sent = await world.ingest(*(world.log.message(ROOM, BOB, f"m{n}") for n in range(3)))
    body = await world.alice_sync(since=since, filter={"room": {"timeline": {"limit": 2}}})
    assert timeline_ids(body, "join", ROOM) == sent[1:]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True
    assert state_ids(body, "join", ROOM) == [rename]


async def test_new_messages_in_joined_room_without_state(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    sent = await world.ingest(world.log.message(ROOM, BOB, "hi"))
    body = await world.alice_sync(since=since)
    assert timeline_ids(body, "join", ROOM) == sent
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is False
    assert state_ids(body, "join", ROOM) == []


async def test_rooms_of_other_users_do_not_appear(world: World) -> None:
    since = await world.alice_now()
    await world.ingest(*world.log.create_room(OTHER, BOB, name="Secret"))
    await world.ingest(world.log.message(ROOM, BOB, "not for alice"))
    body = await world.alice_sync(since=since)
    assert "rooms" not in body or not any(body["rooms"].values())
    assert rooms_of(await world.alice_sync(), "join") == set()


# --- leaves and bans --------------------------------------------------------------------


async def _leave_case(world: World, membership: str, sender: str) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    (before,) = await world.ingest(world.log.message(ROOM, BOB, "bye?"))
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, membership, sender=sender))
    later = await world.ingest(
        world.log.message(ROOM, BOB, "after alice left"),
        world.log.event(ROOM, BOB, "m.room.topic", {"topic": "new topic"}, ""),
    )
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "leave") == {ROOM}
    assert rooms_of(body, "join") == set() and rooms_of(body, "invite") == set()
    timeline = timeline_ids(body, "leave", ROOM)
    assert timeline == [before, leave]
    assert not set(later) & set(timeline)
    assert not set(later) & set(state_ids(body, "leave", ROOM))
    last = body["rooms"]["leave"][ROOM]["timeline"]["events"][-1]
    assert last["content"]["membership"] == membership

    # Later syncs never show the room again, whatever happens in it.
    next_batch = body["next_batch"]
    await world.ingest(world.log.message(ROOM, BOB, "still talking"))
    body = await world.alice_sync(since=next_batch)
    assert "rooms" not in body or not any(body["rooms"].values())
    assert rooms_of(await world.alice_sync(), "join") == set()


async def test_leave_timeline_ends_at_the_leave(world: World) -> None:
    await _leave_case(world, "leave", ALICE)


async def test_ban_timeline_ends_at_the_ban(world: World) -> None:
    await _leave_case(world, "ban", BOB)


async def test_kick_timeline_ends_at_the_kick(world: World) -> None:
    await _leave_case(world, "leave", BOB)


async def test_leave_with_long_history_after_it(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    later = await world.ingest(*(world.log.message(ROOM, BOB, f"m{n}") for n in range(15)))
    body = await world.alice_sync(since=since, filter={"room": {"timeline": {"limit": 3}}})
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert body["rooms"]["leave"][ROOM]["timeline"]["limited"] is False
    assert not set(later) & set(state_ids(body, "leave", ROOM))


async def test_join_and_leave_in_one_range(world: World) -> None:
    since = await world.alice_now()
    (join,) = await world.ingest(world.log.member(ROOM, ALICE, "join"))
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    later = await world.ingest(world.log.message(ROOM, BOB, "after"))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "join") == set()
    assert rooms_of(body, "leave") == {ROOM}
    timeline = timeline_ids(body, "leave", ROOM)
    assert timeline[-2:] == [join, leave]
    assert later[0] not in timeline


async def test_include_leave_shows_left_rooms_in_complete_sync(world: World) -> None:
    await world.alice_joins()
    (leave,) = await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    later = await world.ingest(world.log.message(ROOM, BOB, "after"))
    body = await world.alice_sync()
    assert rooms_of(body, "leave") == set() and rooms_of(body, "join") == set()
    body = await world.alice_sync(filter={"room": {"include_leave": True}})
    assert rooms_of(body, "leave") == {ROOM}
    timeline = timeline_ids(body, "leave", ROOM)
    assert timeline[-1] == leave
    assert later[0] not in timeline


async def test_rejoin_after_leave_sends_full_state(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    await world.ingest(world.log.member(ROOM, ALICE, "leave"))
    (rejoin,) = await world.ingest(world.log.member(ROOM, ALICE, "join"))
    body = await world.alice_sync(since=since)
    assert rooms_of(body, "join") == {ROOM}
    assert rooms_of(body, "leave") == set()
    assert timeline_ids(body, "join", ROOM)[-1] == rejoin
    # Full state at the start of the timeline (whatever the timeline holds).
    seen = state_keys(body, "join", ROOM) | {
        (e["type"], e["state_key"])
        for e in body["rooms"]["join"][ROOM]["timeline"]["events"]
        if "state_key" in e
    }
    assert seen >= ROOM_STATE | {("m.room.member", ALICE)}


# --- full_state -------------------------------------------------------------------------


async def test_full_state_with_new_events(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    sent = await world.ingest(world.log.message(ROOM, BOB, "hello"))
    body = await world.alice_sync(since=since, full_state=True)
    assert timeline_ids(body, "join", ROOM) == sent
    assert state_keys(body, "join", ROOM) == ROOM_STATE | {("m.room.member", ALICE)}


# --- filters ----------------------------------------------------------------------------


def filter_path(user_id: str, filter_id: str | None = None) -> str:
    path = f"/_matrix/client/v3/user/{user_id}/filter"
    return path if filter_id is None else f"{path}/{filter_id}"


async def upload_filter(world: World, token: str, user_id: str, filt: dict[str, Any]) -> str:
    r = await world.http.post(filter_path(user_id), json=filt, headers=auth(token))
    assert r.status_code == 200, r.text
    filter_id = r.json()["filter_id"]
    assert isinstance(filter_id, str) and filter_id
    return filter_id


async def test_uploaded_filter_can_be_read_back(world: World) -> None:
    filt = {"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}
    filter_id = await upload_filter(world, world.alice, ALICE, filt)
    r = await world.http.get(filter_path(ALICE, filter_id), headers=auth(world.alice))
    assert r.status_code == 200
    assert r.json() == filt


async def test_stored_filter_limits_the_timeline(world: World) -> None:
    await world.alice_joins()
    sent = await world.ingest(*(world.log.message(ROOM, BOB, f"m{n}") for n in range(5)))
    filter_id = await upload_filter(world, world.alice, ALICE, {"room": {"timeline": {"limit": 2}}})
    body = await world.alice_sync(filter=filter_id)
    assert timeline_ids(body, "join", ROOM) == sent[-2:]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True


async def test_inline_filter_limits_the_timeline(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    sent = await world.ingest(*(world.log.message(ROOM, BOB, f"m{n}") for n in range(4)))
    body = await world.alice_sync(since=since, filter={"room": {"timeline": {"limit": 3}}})
    assert timeline_ids(body, "join", ROOM) == sent[-3:]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True


async def test_inline_filter_rooms_excludes_other_rooms(world: World) -> None:
    await world.alice_joins()
    await world.ingest(*world.log.create_room(OTHER, ALICE))
    body = await world.alice_sync(filter={"room": {"not_rooms": [ROOM]}})
    assert rooms_of(body, "join") == {OTHER}


@pytest.mark.parametrize(
    "text",
    [
        '{"room": {"timeline": {"limit": 0}}}',
        '{"room": {"timeline": {"limit": "5"}}}',
        '{"room": []}',
        '{"room": {"rooms": ["not-a-room-id"]}}',
        "[]",
        "abc",
        "-1",
        "1.5",
    ],
)
async def test_invalid_filter_is_a_400(world: World, text: str) -> None:
    r = await world.http.get(
        "/_matrix/client/v3/sync", params={"filter": text}, headers=auth(world.alice)
    )
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")


async def test_inline_filter_that_is_not_json_is_a_400(world: World) -> None:
    r = await world.http.get(
        "/_matrix/client/v3/sync", params={"filter": "{room"}, headers=auth(world.alice)
    )
    assert r.status_code == 400
    assert r.json()["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_NOT_JSON")


async def test_invalid_filter_upload_is_a_400(world: World) -> None:
    r = await world.http.post(
        filter_path(ALICE),
        json={"room": {"timeline": {"limit": -3}}},
        headers=auth(world.alice),
    )
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_BAD_JSON"
    r = await world.http.post(filter_path(ALICE), content=b"{oops", headers=auth(world.alice))
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_NOT_JSON"


async def test_unknown_filter_id_is_a_404(world: World) -> None:
    r = await world.http.get(
        "/_matrix/client/v3/sync", params={"filter": "12345"}, headers=auth(world.alice)
    )
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_NOT_FOUND"
    r = await world.http.get(filter_path(ALICE, "12345"), headers=auth(world.alice))
    assert r.status_code == 404
    assert r.json()["errcode"] == "M_NOT_FOUND"


async def test_another_users_filter_is_forbidden(world: World) -> None:
    filter_id = await upload_filter(world, world.bob, BOB, {"room": {"timeline": {"limit": 1}}})
    r = await world.http.get(filter_path(BOB, filter_id), headers=auth(world.alice))
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_FORBIDDEN"
    r = await world.http.post(filter_path(BOB), json={}, headers=auth(world.alice))
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_FORBIDDEN"


async def test_another_users_filter_id_is_not_applied_to_my_sync(world: World) -> None:
    await world.alice_joins()
    bob_filter = await upload_filter(world, world.bob, BOB, {"room": {"timeline": {"limit": 1}}})
    r = await world.http.get(
        "/_matrix/client/v3/sync", params={"filter": bob_filter}, headers=auth(world.alice)
    )
    assert r.status_code in (403, 404), r.text
