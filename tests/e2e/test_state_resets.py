"""State resets: the room server drops a user's membership from the room's state without
replacing it. The user is then out of the room everywhere: ``/sync`` (``rooms.leave``,
never ``rooms.join``), ``/joined_rooms``, ``/members``, ``/joined_members`` and the
notifier's map of who is woken for the room's events."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, rooms_of, timeline_ids
from .rooms_support import ROOM, Rooms, make_rooms, member_keys


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


async def reset_alice(rooms: Rooms) -> tuple[str, str]:
    """Bob's room with Alice and Carol joined; then an event of Bob's whose state delta
    drops Alice's membership. The reset event's ID and Alice's token from before it."""
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    await rooms.join(ROOM, CAROL)
    await rooms.say(ROOM, BOB, "before")
    since = await rooms.now(ALICE)
    reset = rooms.log.drop_state(
        rooms.log.message(ROOM, BOB, "the reset"), ("m.room.member", ALICE)
    )
    (eid,) = await rooms.ingest(reset)
    return eid, since


async def test_a_reset_membership_shows_the_room_as_left(rooms: Rooms) -> None:
    reset, since = await reset_alice(rooms)
    body = await rooms.sync(ALICE, since=since, timeout=0)
    assert ROOM not in rooms_of(body, "join")
    assert timeline_ids(body, "leave", ROOM) == [reset]
    # Later events of the room are not the user's any more.
    after = body["next_batch"]
    await rooms.say(ROOM, BOB, "after the reset")
    body = await rooms.sync(ALICE, since=after, timeout=0)
    assert ROOM not in rooms_of(body, "join") | rooms_of(body, "leave")
    complete = await rooms.sync(ALICE)
    assert ROOM not in rooms_of(complete, "join")
    with_leave = await rooms.sync(ALICE, filter={"room": {"include_leave": True}})
    assert timeline_ids(with_leave, "leave", ROOM)[-1] == reset


async def test_read_endpoints_and_the_notifier_agree(rooms: Rooms, service: Service) -> None:
    await reset_alice(rooms)
    assert ROOM not in await rooms.joined_rooms(ALICE)
    assert ROOM in await rooms.joined_rooms(CAROL)
    members = await rooms.members(BOB, ROOM)
    assert member_keys(members["chunk"]) == {BOB, CAROL}
    assert set((await rooms.joined_members(BOB, ROOM))["joined"]) == {BOB, CAROL}
    await rooms.error(ALICE, f"/rooms/{ROOM}/joined_members", 403, "M_FORBIDDEN")
    assert service.notifier.joined_members(ROOM) == {BOB, CAROL}
    assert ROOM not in service.notifier.rooms_of(ALICE)


async def test_the_reset_user_can_join_again(rooms: Rooms) -> None:
    _, since = await reset_alice(rooms)
    join = await rooms.join(ROOM, ALICE)
    body = await rooms.sync(ALICE, since=since, timeout=0)
    assert timeline_ids(body, "join", ROOM)[-1] == join
    events = body["rooms"]["join"][ROOM]["timeline"]["events"]
    # Nothing in the state replaced: the new join has no previous content.
    assert "prev_content" not in events[-1].get("unsigned", {})
    assert ROOM in await rooms.joined_rooms(ALICE)
    assert member_keys((await rooms.members(BOB, ROOM))["chunk"]) == {ALICE, BOB, CAROL}
