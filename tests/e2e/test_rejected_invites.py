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
async def test_nothing_visible_before_the_rejection(rooms: Rooms, incremental: bool) -> None:
    since, _, _, leave = await rejected(rooms, "shared")
    params = {"since": since, "timeout": 0} if incremental else {}
    body = await rooms.sync(ALICE, filter=LEAVE, **params)
    timeline = body["rooms"]["leave"][ROOM]["timeline"]
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert timeline["limited"] is False
    page = await rooms.messages(ALICE, ROOM, **{"from": timeline["prev_batch"]})
    assert page["chunk"] == []
    assert "end" not in page


@pytest.mark.parametrize("incremental", [False, True])
async def test_visible_invite_and_message_precede_the_rejection(
    rooms: Rooms, incremental: bool
) -> None:
    since, invite, hello, leave = await rejected(rooms, "invited")
    params = {"since": since, "timeout": 0} if incremental else {}
    body = await rooms.sync(ALICE, filter=LEAVE, **params)
    timeline = body["rooms"]["leave"][ROOM]["timeline"]
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert timeline["limited"] is True
    assert await rooms.page_all(ALICE, ROOM, **{"from": timeline["prev_batch"]}) == [
        hello,
        invite,
    ]
