"""A room newly joined in an incremental sync comes with its current receipts, typing and
the presence of its members, not only what changed since ``since``."""

from __future__ import annotations

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, SERVER, event_id, sync
from .support import call, ephemeral

CAROL = f"@carol:{SERVER}"
ROOM = f"!fresh:{SERVER}"


async def test_joining_brings_the_rooms_receipts_typing_and_presence(
    service: Service, http: httpx.AsyncClient
) -> None:
    bob = await service.add_device(BOB, "BOBDEV")
    alice = await service.add_device(ALICE, "ALICEDEV")
    # Carol's room, with Bob in it: Bob reads, types and is online before Alice is there.
    log = RoomLog(SERVER)
    await service.ingest([*log.create_room(ROOM, CAROL), log.member(ROOM, BOB, "join")])
    message = log.message(ROOM, BOB, "before alice")
    await service.ingest([message])
    await sync(http, bob, set_presence="online")
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{event_id(message)}", bob, {})
    await call(http, "PUT", f"/rooms/{ROOM}/typing/{BOB}", bob, {"typing": True, "timeout": 60_000})

    since = (await sync(http, alice, set_presence="offline"))["next_batch"]
    await service.ingest([log.member(ROOM, ALICE, "join")])
    body = await sync(http, alice, since=since, set_presence="offline")

    assert ROOM in body["rooms"]["join"]
    (receipt,) = ephemeral(body, ROOM, "m.receipt")
    assert BOB in receipt["content"][event_id(message)]["m.read"]
    (typing,) = ephemeral(body, ROOM, "m.typing")
    assert typing["content"]["user_ids"] == [BOB]
    presence = {e["sender"]: e["content"]["presence"] for e in body["presence"]["events"]}
    assert presence[BOB] == "online"
