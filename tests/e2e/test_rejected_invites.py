"""A room left by rejecting an invite, with ``include_leave``: the timeline is the user's
leave alone; ``limited`` says whether an event the user may see precedes it, and
paginating back from ``prev_batch`` never gives the leave again."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, timeline_ids
from .rooms_support import ROOM, Rooms, make_rooms

LEAVE = {"room": {"include_leave": True}}


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


async def rejected(rooms: Rooms, setting: str) -> tuple[str, str, str, str]:
    """Bob's room with ``setting``; Bob invites Alice, says hello; Alice rejects. Alice's
    token from before the invite, and the IDs of the invite, the hello and the leave."""
    await rooms.room(setting=setting)
    since = await rooms.now(ALICE)
    invite, hello = await rooms.ingest(
        rooms.log.member(ROOM, ALICE, "invite", sender=BOB),
        rooms.log.message(ROOM, BOB, "hello"),
    )
    leave = (await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave")))[0]
    return since, invite, hello, leave


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("setting", ["shared", "joined", "invited"])
async def test_the_rejection_alone_and_never_again(
    rooms: Rooms, incremental: bool, setting: str
) -> None:
    since, _, _, leave = await rejected(rooms, setting)
    params = {"since": since, "timeout": 0} if incremental else {}
    body = await rooms.sync(ALICE, filter=LEAVE, **params)
    timeline = body["rooms"]["leave"][ROOM]["timeline"]
    assert timeline_ids(body, "leave", ROOM) == [leave]
    # Never joined: nothing before the leave is hers to see (the room is not world
    # readable), and paginating from prev_batch gives nothing, the leave least of all.
    # Under "invited" too: the hello came while she was invited, but a user never joined
    # may not read the room, and /sync follows the read endpoints' rule.
    assert timeline["limited"] is False
    r = await rooms.get(
        ALICE, f"/rooms/{ROOM}/messages", dir="b", **{"from": timeline["prev_batch"]}
    )
    assert r.status_code == 403, r.text


async def test_prev_batch_is_just_before_the_leave_in_a_world_readable_room(
    rooms: Rooms,
) -> None:
    _, invite, hello, leave = await rejected(rooms, "world_readable")
    body = await rooms.sync(ALICE, filter=LEAVE)
    timeline = body["rooms"]["leave"][ROOM]["timeline"]
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert timeline["limited"] is True
    back = await rooms.page_all(ALICE, ROOM, **{"from": timeline["prev_batch"]})
    assert back[:2] == [hello, invite]
    assert leave not in back
