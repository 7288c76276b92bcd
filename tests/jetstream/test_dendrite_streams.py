"""Dendrite's output streams, published in its wire format, served by /sync.

The seed's worked example (one room, 15 events) arrives on ``OutputRoomEvent`` exactly as
Dendrite's room server publishes it; every per-user stream then carries one message of
its kind, and each shows up in /sync where a client expects it.
"""

from __future__ import annotations

import time

import httpx

from trio_sync import Service, StreamToken

from ..e2e.conftest import ALICE, BOB, SERVER, state_ids, sync, timeline_ids, token_fields
from ..e2e.test_seed_example import ORDER, ROOM, labels_of, seed_messages
from .conftest import DendriteBus, rejects, wait_committed


async def publish_seed(bus: DendriteBus) -> tuple[dict[str, str], int]:
    messages, labels = seed_messages()
    seq = 0
    for message in messages:
        seq = await bus.room_event(message)
    return labels, seq


async def check_seed_syncs(http: httpx.AsyncClient, token: str, labels: dict[str, str]) -> None:
    """The seed's complete sync (timeline limit 1) and its incremental sync from 9 (limit
    5), as the seed's README works them out."""
    complete = await sync(http, token, filter={"room": {"timeline": {"limit": 1}}})
    assert labels_of(timeline_ids(complete, "join", ROOM), labels) == ["6"]
    assert sorted(labels_of(state_ids(complete, "join", ROOM), labels)) == sorted(
        ["A", "B'", "C", "D''''"]
    )
    assert token_fields(complete["next_batch"])[0] == 15

    since_9 = str(StreamToken(pdu=9))
    body = await sync(http, token, since=since_9, filter={"room": {"timeline": {"limit": 5}}})
    assert labels_of(timeline_ids(body, "join", ROOM), labels) == ORDER[10:]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True
    assert labels_of(state_ids(body, "join", ROOM), labels) == ["D''"]


async def test_seed_example_complete_and_incremental_sync(
    bus: DendriteBus, js_service: Service, js_http: httpx.AsyncClient
) -> None:
    labels, last = await publish_seed(bus)
    assert last == 15
    await wait_committed(js_service, bus, "OutputRoomEvent", last)
    token = await js_service.add_device(ALICE, "SEED")
    await check_seed_syncs(js_http, token, labels)
    assert await rejects(js_service) == []
    # The stream's ingest lag is reported: nothing left behind the committed sequence.
    metrics = (await js_http.get("/metrics")).text
    source = "jetstream:" + bus.stream("OutputRoomEvent")
    assert f'trio_sync_ingest_lag{{source="{source}"}} 0.0' in metrics


async def test_each_per_user_stream_reaches_sync(
    bus: DendriteBus, js_service: Service, js_http: httpx.AsyncClient
) -> None:
    labels, last = await publish_seed(bus)
    # Bob joins, so that Alice shares the room with him.
    from trio_sync.roomlog import RoomLog

    log = RoomLog(SERVER)
    join = log.member(ROOM, BOB, "join")
    await bus.room_event(join)
    await wait_committed(js_service, bus, "OutputRoomEvent", last + 1)
    alice = await js_service.add_device(ALICE, "LAPTOP")
    bob = await js_service.add_device(BOB, "PHONE")
    start_alice = (await sync(js_http, alice))["next_batch"]
    start_bob = (await sync(js_http, bob))["next_batch"]

    now = int(time.time() * 1000)
    six = labels["6"]
    await bus.receipt(BOB, ROOM, six, "m.read", now)
    await bus.typing(BOB, ROOM, True, 30_000)
    await bus.send_to_device(ALICE, BOB, "PHONE", "m.room_key_request", {"action": "request"})
    await bus.device_keys(BOB, "PHONE", {"user_id": BOB, "device_id": "PHONE", "keys": {}}, 1)
    await bus.notification_data(ALICE, ROOM, 3, 1)
    await bus.presence(BOB, "unavailable", now, status_msg="lunch")
    ignored = {"ignored_users": {"@spam:example.org": {}}}
    await bus.client_data(ALICE, "", "m.ignored_user_list", ignored_users=ignored)
    for name in (
        "OutputReceiptEvent",
        "OutputTypingEvent",
        "OutputSendToDeviceEvent",
        "OutputKeyChangeEvent",
        "OutputNotificationData",
        "OutputPresenceEvent",
        "OutputClientData",
    ):
        await wait_committed(js_service, bus, name, 1)

    a = await sync(js_http, alice, since=start_alice)
    room = a["rooms"]["join"][ROOM]
    receipts = [e for e in room["ephemeral"]["events"] if e["type"] == "m.receipt"]
    assert receipts and BOB in receipts[0]["content"][six]["m.read"]
    typing = [e for e in room["ephemeral"]["events"] if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == [BOB]
    assert room["unread_notifications"] == {"notification_count": 3, "highlight_count": 1}
    assert BOB in a["device_lists"]["changed"]
    presence = {e["sender"]: e["content"] for e in a["presence"]["events"]}
    assert presence[BOB]["presence"] == "unavailable"
    assert presence[BOB]["status_msg"] == "lunch"
    account = {e["type"]: e["content"] for e in a["account_data"]["events"]}
    assert account["m.ignored_user_list"] == ignored

    b = await sync(js_http, bob, since=start_bob)
    assert [(m["sender"], m["type"], m["content"]) for m in b["to_device"]["events"]] == [
        (ALICE, "m.room_key_request", {"action": "request"})
    ]
    assert await rejects(js_service) == []
