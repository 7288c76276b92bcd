"""Bundled relations in sliding sync timelines, wherever the timeline's events lie among
the room's newest events."""

from __future__ import annotations

import httpx

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, SERVER, event_id
from .sliding_support import room_list, sliding
from .support import call, room_with

ROOM = f"!threads:{SERVER}"


async def test_a_thread_root_behind_newer_events_of_an_ignored_user_keeps_its_bundle(
    service: Service, http: httpx.AsyncClient
) -> None:
    alice = await service.add_device(ALICE, "A")
    log = await room_with(service, BOB, CAROL, room_id=ROOM)
    request = {"lists": {"all": room_list(0, 0, timeline_limit=2)}}
    first = await sliding(http, alice, request)
    ignore = f"/user/{ALICE}/account_data/m.ignored_user_list"
    await call(http, "PUT", ignore, alice, {"ignored_users": {BOB: {}}})
    root = log.message(ROOM, CAROL, "root")
    relates = {"rel_type": "m.thread", "event_id": event_id(root)}
    reply = log.event(ROOM, CAROL, "m.room.message", {"body": "reply", "m.relates_to": relates})
    # The newest events are all Bob's: the timeline is found further back.
    await service.ingest([root, reply, *(log.message(ROOM, BOB, f"bob {n}") for n in range(3))])
    body = await sliding(http, alice, request, pos=first["pos"])
    timeline = body["rooms"][ROOM]["timeline"]
    assert [e["content"]["body"] for e in timeline] == ["root", "reply"]
    thread = timeline[0]["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 1
    assert thread["latest_event"]["event_id"] == event_id(reply)
