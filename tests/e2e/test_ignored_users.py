"""Ignored users (``m.ignored_user_list``): their events and invites are never served."""

from __future__ import annotations

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, SERVER, auth, event_id, sync, timeline_ids
from .support import call, room_with

CAROL = f"@carol:{SERVER}"
ROOM = f"!ignore:{SERVER}"
OTHER = f"!other:{SERVER}"
IGNORE_PATH = f"/user/{ALICE}/account_data/m.ignored_user_list"


async def _ignore(http: httpx.AsyncClient, token: str, *users: str) -> None:
    await call(http, "PUT", IGNORE_PATH, token, {"ignored_users": {u: {} for u in users}})


async def test_ignored_users_events_leave_the_timeline(
    service: Service, http: httpx.AsyncClient
) -> None:
    alice = await service.add_device(ALICE, "ALICEDEV")
    log = await room_with(service, BOB, CAROL, room_id=ROOM)
    since = (await sync(http, alice))["next_batch"]
    await _ignore(http, alice, BOB)
    from_bob = log.message(ROOM, BOB, "hello from bob")
    from_carol = log.message(ROOM, CAROL, "hello from carol")
    await service.ingest([from_bob, from_carol])

    body = await sync(http, alice, since=since)
    assert body["account_data"]["events"][0]["type"] == "m.ignored_user_list"
    assert timeline_ids(body, "join", ROOM) == [event_id(from_carol)]
    complete = await sync(http, alice)
    assert event_id(from_bob) not in timeline_ids(complete, "join", ROOM)
    assert event_id(from_carol) in timeline_ids(complete, "join", ROOM)

    r = await http.get(
        f"/_matrix/client/v3/rooms/{ROOM}/messages", params={"dir": "b"}, headers=auth(alice)
    )
    chunk = [e["event_id"] for e in r.json()["chunk"]]
    assert event_id(from_carol) in chunk and event_id(from_bob) not in chunk

    # Unignoring brings Bob's events back.
    await _ignore(http, alice)
    assert event_id(from_bob) in timeline_ids(await sync(http, alice), "join", ROOM)


async def test_invites_from_ignored_users_never_appear(
    service: Service, http: httpx.AsyncClient
) -> None:
    alice = await service.add_device(ALICE, "ALICEDEV")
    log = RoomLog(SERVER)
    await service.ingest(log.create_room(ROOM, BOB) + log.create_room(OTHER, CAROL))
    await _ignore(http, alice, BOB)
    since = (await sync(http, alice))["next_batch"]
    await service.ingest(
        [
            log.member(ROOM, ALICE, "invite", sender=BOB),
            log.member(OTHER, ALICE, "invite", sender=CAROL),
        ]
    )
    body = await sync(http, alice, since=since)
    assert set(body["rooms"]["invite"]) == {OTHER}
    assert set((await sync(http, alice))["rooms"]["invite"]) == {OTHER}
