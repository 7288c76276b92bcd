"""``/context/{eventId}``, ``/event/{eventId}``, ``/members``, ``/joined_members`` and
``/joined_rooms``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, without_age
from .rooms_support import (
    DAVE,
    OTHER,
    ROOM,
    Rooms,
    by_key,
    context_path,
    event_path,
    make_rooms,
    member_keys,
)


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


# --- /context -------------------------------------------------------------------------------


async def test_context_gives_the_events_around_the_event(rooms: Rooms) -> None:
    await rooms.room()
    join = await rooms.join(ROOM, ALICE)
    sent = await rooms.say(ROOM, BOB, *(f"m{i}" for i in range(6)))
    body = await rooms.context(ALICE, ROOM, sent[2], limit=4)
    assert body["event"]["event_id"] == sent[2]
    assert body["event"]["content"]["body"] == "m2"
    assert ids(body["events_before"]) == [sent[1], sent[0]]
    assert ids(body["events_after"]) == [sent[3], sent[4]]
    # start and end continue the window with /messages.
    before = await rooms.messages(ALICE, ROOM, **{"from": body["start"], "limit": 1})
    assert ids(before["chunk"]) == [join]
    after = await rooms.messages(ALICE, ROOM, **{"dir": "f", "from": body["end"], "limit": 5})
    assert ids(after["chunk"]) == [sent[5]]


async def test_context_state_is_the_room_state(rooms: Rooms) -> None:
    created = await rooms.room()
    join = await rooms.join(ROOM, ALICE)
    sent = await rooms.say(ROOM, BOB, "m0", "m1")
    body = await rooms.context(ALICE, ROOM, sent[0], limit=0)
    assert body["events_before"] == [] and body["events_after"] == []
    state = by_key(body["state"])
    assert state[("m.room.create", "")]["event_id"] == created[0]
    assert state[("m.room.name", "")]["event_id"] == created[5]
    assert state[("m.room.member", ALICE)]["event_id"] == join
    assert member_keys(body["state"]) == {ALICE, BOB}


async def test_context_state_is_at_the_last_event_returned(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    (m0,) = await rooms.say(ROOM, BOB, "m0")
    (topic,) = await rooms.ingest(rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": "new"}, ""))
    body = await rooms.context(ALICE, ROOM, m0, limit=2)
    assert ids(body["events_after"]) == [topic]
    assert by_key(body["state"])[("m.room.topic", "")]["event_id"] == topic


async def test_context_filter_applies_to_the_surrounding_events(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    await rooms.join(ROOM, CAROL)
    (b1,) = await rooms.say(ROOM, BOB, "b1")
    await rooms.say(ROOM, CAROL, "c1")
    (b2,) = await rooms.say(ROOM, BOB, "b2")
    await rooms.say(ROOM, CAROL, "c2")
    (b3,) = await rooms.say(ROOM, BOB, "b3")
    body = await rooms.context(
        ALICE, ROOM, b2, limit=2, filter={"senders": [BOB], "lazy_load_members": True}
    )
    assert body["event"]["event_id"] == b2
    assert ids(body["events_before"]) == [b1]
    assert ids(body["events_after"]) == [b3]
    assert member_keys(body["state"]) == {BOB}


async def test_context_of_an_unknown_or_foreign_event_is_a_404(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    other = await rooms.room(OTHER, creator=ALICE, name="Other")
    await rooms.error(ALICE, context_path(ROOM, "$nope"), 404, "M_NOT_FOUND")
    # An event of another room, asked for under this room's path.
    await rooms.error(ALICE, context_path(ROOM, other[0]), 404, "M_NOT_FOUND")
    await rooms.error(ALICE, event_path(ROOM, other[0]), 404, "M_NOT_FOUND")


# --- /event ---------------------------------------------------------------------------------


async def test_event_is_served_as_in_the_sync_timeline(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    (sent,) = await rooms.say(ROOM, BOB, "hello")
    timeline = (await rooms.sync(ALICE))["rooms"]["join"][ROOM]["timeline"]["events"]
    in_sync = next(e for e in timeline if e["event_id"] == sent)
    body = await rooms.event(ALICE, ROOM, sent)
    # The same event; /sync leaves out the room_id (the room is the key it sits under).
    assert without_age(body) == without_age({**in_sync, "room_id": ROOM})
    assert body["content"] == {"msgtype": "m.text", "body": "hello"}
    assert body["sender"] == BOB and body["room_id"] == ROOM


async def test_unknown_event_is_a_404(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    await rooms.error(ALICE, event_path(ROOM, "$unknown"), 404, "M_NOT_FOUND")


# --- /members -------------------------------------------------------------------------------


async def test_members_lists_member_events(rooms: Rooms) -> None:
    await rooms.room()
    join = await rooms.join(ROOM, ALICE)
    (invite,) = await rooms.ingest(rooms.log.member(ROOM, DAVE, "invite", sender=BOB))
    body = await rooms.members(ALICE, ROOM)
    by_user = {e["state_key"]: e for e in body["chunk"]}
    assert set(by_user) == {BOB, ALICE, DAVE}
    assert by_user[ALICE]["event_id"] == join
    assert by_user[DAVE]["event_id"] == invite
    assert by_user[DAVE]["content"]["membership"] == "invite"


async def test_members_at_a_sync_token_shows_membership_as_of_then(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    then = await rooms.now(ALICE)
    await rooms.join(ROOM, CAROL)
    (bob_left,) = await rooms.ingest(rooms.log.member(ROOM, BOB, "leave"))
    body = await rooms.members(ALICE, ROOM, at=then)
    assert {e["state_key"]: e["content"]["membership"] for e in body["chunk"]} == {
        BOB: "join",
        ALICE: "join",
    }
    body = await rooms.members(ALICE, ROOM)
    assert {e["state_key"]: e["content"]["membership"] for e in body["chunk"]} == {
        BOB: "leave",
        ALICE: "join",
        CAROL: "join",
    }
    assert bob_left in ids(body["chunk"])


async def test_members_at_a_prev_batch_token(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    carol = await rooms.join(ROOM, CAROL)
    await rooms.say(ROOM, CAROL, "hi")
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 2}}})
    timeline = body["rooms"]["join"][ROOM]["timeline"]
    assert ids(timeline["events"])[0] == carol
    # prev_batch is the point just before Carol's join.
    members = await rooms.members(ALICE, ROOM, at=timeline["prev_batch"])
    assert member_keys(members["chunk"]) == {BOB, ALICE}


async def test_members_membership_and_not_membership(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    await rooms.join(ROOM, CAROL)
    await rooms.ingest(
        rooms.log.member(ROOM, CAROL, "leave"),
        rooms.log.member(ROOM, DAVE, "invite", sender=BOB),
    )
    joined = await rooms.members(ALICE, ROOM, membership="join")
    assert member_keys(joined["chunk"]) == {BOB, ALICE}
    invited = await rooms.members(ALICE, ROOM, membership="invite")
    assert member_keys(invited["chunk"]) == {DAVE}
    not_left = await rooms.members(ALICE, ROOM, not_membership="leave")
    assert member_keys(not_left["chunk"]) == {BOB, ALICE, DAVE}
    r = await rooms.get(ALICE, f"/rooms/{ROOM}/members", membership="joined")
    assert r.status_code == 400
    assert r.json()["errcode"] == "M_INVALID_PARAM"


async def test_members_of_a_room_never_joined_is_forbidden(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.error(ALICE, f"/rooms/{ROOM}/members", 403, "M_FORBIDDEN")


# --- /joined_members and /joined_rooms -----------------------------------------------------


async def test_joined_members_with_display_names(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE, displayname="Alice A.", avatar_url="mxc://example.org/a")
    await rooms.ingest(rooms.log.member(ROOM, DAVE, "invite", sender=BOB))
    await rooms.join(ROOM, CAROL, displayname="Carol")
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "leave"))
    body = await rooms.joined_members(ALICE, ROOM)
    assert body["joined"] == {
        ALICE: {"display_name": "Alice A.", "avatar_url": "mxc://example.org/a"},
        BOB: {},
    }


async def test_joined_members_of_a_room_not_joined_is_forbidden(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "invite", sender=BOB))
    await rooms.error(CAROL, f"/rooms/{ROOM}/joined_members", 403, "M_FORBIDDEN")
    await rooms.error(ALICE, f"/rooms/{ROOM}/joined_members", 403, "M_FORBIDDEN")


async def test_joined_rooms_lists_only_rooms_joined_now(rooms: Rooms) -> None:
    third = "!third:example.org"
    fourth = "!fourth:example.org"
    await rooms.room()
    await rooms.room(OTHER, creator=BOB, name="Other")
    await rooms.room(third, creator=BOB, name="Third")
    await rooms.room(fourth, creator=BOB, name="Fourth")
    assert await rooms.joined_rooms(ALICE) == []
    await rooms.join(ROOM, ALICE)
    await rooms.join(OTHER, ALICE)
    await rooms.join(third, ALICE)
    await rooms.ingest(
        rooms.log.member(third, ALICE, "leave"),
        rooms.log.member(fourth, ALICE, "invite", sender=BOB),
    )
    assert sorted(await rooms.joined_rooms(ALICE)) == sorted([ROOM, OTHER])
    assert sorted(await rooms.joined_rooms(BOB)) == sorted([ROOM, OTHER, third, fourth])
