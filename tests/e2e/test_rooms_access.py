"""Who may read a room: one rule for ``/messages``, ``/context``, ``/event``, ``/members``
and ``/joined_members``, for every membership a user can have.

A user may read a room it is joined to, or was joined to (a leave or a ban after a join
keeps what it could see), or any room whose history is ``world_readable``. Everyone else
(no membership, a pending invite or knock, a ban without a join, a rejected invite) gets
403 ``M_FORBIDDEN`` — except from ``/event``, whose only answer for an event the user may
not read is 404 ``M_NOT_FOUND``, as the spec defines it. ``/joined_members`` wants a current
join (or a ``world_readable`` room).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL
from .rooms_support import (
    DAVE,
    OTHER,
    ROOM,
    Rooms,
    context_path,
    event_path,
    make_rooms,
    member_keys,
    messages_path,
    user,
)

INVITED, KNOCKING, LEFT, BANNED, BANNED_COLD, REJECTED = (user(n) for n in range(1, 7))


@dataclass
class World:
    rooms: Rooms
    #: A message of ROOM every past member saw (sent while all of them were joined).
    seen: str
    #: A message of ROOM sent after the leaves and bans.
    later: str
    #: A message of OTHER, the world-readable room nobody but Bob is in.
    public: str


@pytest.fixture
async def world(service: Service, http: httpx.AsyncClient) -> World:
    rooms = await make_rooms(service, http)
    for u in (INVITED, KNOCKING, LEFT, BANNED, BANNED_COLD, REJECTED, DAVE):
        await rooms.device(u)
    log = rooms.log
    await rooms.room(ROOM, BOB)
    for u in (ALICE, LEFT, BANNED):
        await rooms.join(ROOM, u)
    (seen,) = await rooms.say(ROOM, BOB, "everyone joined sees this")
    await rooms.ingest(
        log.member(ROOM, LEFT, "leave"),
        log.member(ROOM, BANNED, "ban", sender=BOB),
        log.member(ROOM, BANNED_COLD, "ban", sender=BOB),
        log.member(ROOM, INVITED, "invite", sender=BOB),
        log.member(ROOM, KNOCKING, "knock"),
        log.member(ROOM, REJECTED, "invite", sender=BOB),
        log.member(ROOM, REJECTED, "leave"),
    )
    await rooms.join(ROOM, DAVE)
    (later,) = await rooms.say(ROOM, BOB, "after the leaves")
    await rooms.room(OTHER, BOB, setting="world_readable")
    (public,) = await rooms.say(OTHER, BOB, "anyone may read this")
    return World(rooms, seen, later, public)


async def status(w: World, user_id: str, path: str, **params: str) -> tuple[int, str | None]:
    r = await w.rooms.get(user_id, path, **params)
    body = r.json()
    return r.status_code, body.get("errcode") if isinstance(body, dict) else None


def paths(room_id: str, event: str) -> dict[str, str]:
    return {
        "messages": messages_path(room_id),
        "context": context_path(room_id, event),
        "event": event_path(room_id, event),
        "members": f"/rooms/{room_id}/members",
        "joined_members": f"/rooms/{room_id}/joined_members",
    }


OUTSIDERS = {
    "none": CAROL,
    "invite": INVITED,
    "knock": KNOCKING,
    "ban without a join": BANNED_COLD,
    "rejected invite": REJECTED,
}


@pytest.mark.parametrize("who", list(OUTSIDERS))
async def test_a_user_never_joined_reads_nothing(world: World, who: str) -> None:
    user_id = OUTSIDERS[who]
    for endpoint, path in paths(ROOM, world.seen).items():
        got = await status(world, user_id, path, dir="b")
        want = (404, "M_NOT_FOUND") if endpoint == "event" else (403, "M_FORBIDDEN")
        assert got == want, f"{who}: {endpoint} answered {got}"


async def test_a_joined_user_reads_everything(world: World) -> None:
    rooms = world.rooms
    body = await rooms.messages(ALICE, ROOM, limit=50)
    assert {world.seen, world.later} <= {e["event_id"] for e in body["chunk"]}
    assert (await rooms.context(ALICE, ROOM, world.later))["event"]["event_id"] == world.later
    assert (await rooms.event(ALICE, ROOM, world.seen))["event_id"] == world.seen
    assert {ALICE, BOB, DAVE} <= member_keys((await rooms.members(ALICE, ROOM))["chunk"])
    assert set((await rooms.joined_members(ALICE, ROOM))["joined"]) == {ALICE, BOB, DAVE}


@pytest.mark.parametrize("who", [LEFT, BANNED])
async def test_a_departed_member_keeps_what_it_could_see(world: World, who: str) -> None:
    rooms = world.rooms
    chunk = (await rooms.messages(who, ROOM, limit=50))["chunk"]
    got = {e["event_id"] for e in chunk}
    assert world.seen in got and world.later not in got
    assert (await rooms.context(who, ROOM, world.seen))["event"]["event_id"] == world.seen
    assert (await rooms.event(who, ROOM, world.seen))["event_id"] == world.seen
    # Events after the departure stay out of reach.
    assert await status(world, who, event_path(ROOM, world.later)) == (404, "M_NOT_FOUND")
    assert await status(world, who, context_path(ROOM, world.later)) == (404, "M_NOT_FOUND")
    # /members: the members at the time of leaving (Dave joined later).
    members = (await rooms.members(who, ROOM))["chunk"]
    assert DAVE not in member_keys(members)
    own = [e for e in members if e["state_key"] == who]
    assert own[0]["content"]["membership"] == ("leave" if who == LEFT else "ban")
    # /joined_members wants a current member.
    got_jm = await status(world, who, f"/rooms/{ROOM}/joined_members")
    assert got_jm == (403, "M_FORBIDDEN")


async def test_anyone_reads_a_world_readable_room(world: World) -> None:
    rooms = world.rooms
    chunk = (await rooms.messages(CAROL, OTHER, limit=50))["chunk"]
    assert world.public in {e["event_id"] for e in chunk}
    assert (await rooms.context(CAROL, OTHER, world.public))["event"]["event_id"] == world.public
    assert (await rooms.event(CAROL, OTHER, world.public))["event_id"] == world.public
    assert member_keys((await rooms.members(CAROL, OTHER))["chunk"]) == {BOB}
    assert set((await rooms.joined_members(CAROL, OTHER))["joined"]) == {BOB}


async def test_an_event_named_under_another_room_is_not_found(world: World) -> None:
    """Access is judged for the room in the path: an event of a room the user may not read,
    asked for under a room it may read, stays hidden."""
    assert await status(world, CAROL, event_path(OTHER, world.seen)) == (404, "M_NOT_FOUND")
    assert await status(world, CAROL, context_path(OTHER, world.seen)) == (404, "M_NOT_FOUND")


async def test_an_unknown_room_is_forbidden(world: World) -> None:
    """An unknown room looks like a room the user is not in (nothing is told apart)."""
    for endpoint, path in paths("!nowhere:example.org", world.seen).items():
        got = await status(world, ALICE, path, dir="b")
        want = (404, "M_NOT_FOUND") if endpoint == "event" else (403, "M_FORBIDDEN")
        assert got == want, f"{endpoint} answered {got}"
