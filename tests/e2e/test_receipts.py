"""Receipts and read markers over HTTP: in complete and incremental syncs, private
receipts, threads, m.fully_read, waking, membership and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import nio
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, event_id, sync
from .support import ROOM, call, ephemeral, nio_parse, room_account_data, room_with, woken_by


@pytest.fixture
async def room(service: Service) -> RoomLog:
    return await room_with(service, BOB)


@pytest.fixture
async def message(service: Service, room: RoomLog) -> str:
    """A message in ROOM, by Alice."""
    msg = room.message(ROOM, ALICE, "read me")
    await service.ingest([msg])
    return event_id(msg)


def receipts(body: dict[str, Any]) -> dict[str, Any]:
    """The merged content of ROOM's m.receipt events."""
    out: dict[str, Any] = {}
    for event in ephemeral(body, ROOM, "m.receipt"):
        out.update(event["content"])
    return out


def readers(body: dict[str, Any], event: str, receipt_type: str = "m.read") -> set[str]:
    return set(receipts(body).get(event, {}).get(receipt_type, {}))


async def test_read_receipts_appear_in_initial_sync(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    bob = await service.add_device(BOB, "B")
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{message}", bob, {})
    alice = await service.add_device(ALICE, "A")
    body = await sync(http, alice)
    assert readers(body, message) == {BOB}
    assert isinstance(receipts(body)[message]["m.read"][BOB]["ts"], int)
    parsed = nio_parse(body)
    assert any(isinstance(e, nio.ReceiptEvent) for e in parsed.rooms.join[ROOM].ephemeral)


async def test_read_receipts_appear_in_incremental_sync(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, bob)
    since = (await sync(http, alice))["next_batch"]

    async def read() -> None:
        await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{message}", bob, {})

    body = await woken_by(service, http, alice, since, read)
    assert readers(body, message) == {BOB}
    assert body["rooms"]["join"][ROOM]["timeline"]["events"] == []
    again = await sync(http, alice, since=body["next_batch"])
    assert receipts(again) == {}


async def test_private_receipts_are_shown_only_to_their_owner(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    since = (await sync(http, alice))["next_batch"]
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read.private/{message}", bob, {})
    assert readers(await sync(http, bob), message, "m.read.private") == {BOB}
    assert receipts(await sync(http, alice)) == {}
    assert receipts(await sync(http, alice, since=since)) == {}


async def test_threaded_receipts_carry_their_thread(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    bob = await service.add_device(BOB, "B")
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{message}", bob, {"thread_id": "main"})
    body = await sync(http, bob)
    assert receipts(body)[message]["m.read"][BOB]["thread_id"] == "main"


async def test_read_markers_can_be_updated(
    service: Service, http: httpx.AsyncClient, room: RoomLog, message: str
) -> None:
    alice = await service.add_device(ALICE, "A")
    await call(http, "POST", f"/rooms/{ROOM}/read_markers", alice, {"m.fully_read": message})
    body = await sync(http, alice)
    assert room_account_data(body, ROOM)["m.fully_read"] == {"event_id": message}

    later = room.message(ROOM, BOB, "later")
    await service.ingest([later])
    since = body["next_batch"]
    await call(
        http,
        "POST",
        f"/rooms/{ROOM}/read_markers",
        alice,
        {"m.fully_read": event_id(later), "m.read": event_id(later)},
    )
    body = await sync(http, alice, since=since)
    assert room_account_data(body, ROOM)["m.fully_read"] == {"event_id": event_id(later)}
    assert readers(body, event_id(later)) == {ALICE}
    # The receipt endpoint moves the marker too.
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.fully_read/{message}", alice, {})
    body = await sync(http, alice, since=body["next_batch"])
    assert room_account_data(body, ROOM)["m.fully_read"] == {"event_id": message}
    assert receipts(body) == {}


async def test_receipts_in_rooms_the_user_is_not_in_are_forbidden(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    carol = await service.add_device(CAROL, "C")
    for path, body in (
        (f"/rooms/{ROOM}/receipt/m.read/{message}", {}),
        (f"/rooms/{ROOM}/read_markers", {"m.fully_read": message}),
    ):
        err = await call(http, "POST", path, carol, body, status=403)
        assert err["errcode"] == "M_FORBIDDEN"
    alice = await service.add_device(ALICE, "A")
    assert receipts(await sync(http, alice)) == {}


async def test_bad_receipt_requests(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    bob = await service.add_device(BOB, "B")
    base = f"/rooms/{ROOM}/receipt"
    err = await call(http, "POST", f"{base}/m.unknown/{message}", bob, {}, status=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await call(http, "POST", f"{base}/m.read/{message}", bob, {"thread_id": ""}, status=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await call(
        http, "POST", f"{base}/m.fully_read/{message}", bob, {"thread_id": "main"}, status=400
    )
    assert err["errcode"] == "M_INVALID_PARAM"
    err = await call(http, "POST", f"{base}/m.read/{message}", bob, content=b"{", status=400)
    assert err["errcode"] == "M_NOT_JSON"
    err = await call(http, "POST", f"/rooms/{ROOM}/read_markers", bob, {"m.read": 5}, status=400)
    assert err["errcode"] == "M_BAD_JSON"
    # A receipt with no body at all is accepted.
    r = await http.post(
        f"/_matrix/client/v3{base}/m.read/{message}", headers={"Authorization": f"Bearer {bob}"}
    )
    assert r.status_code == 200


async def test_receipt_log_messages_feed_the_stream(
    service: Service, http: httpx.AsyncClient, message: str
) -> None:
    alice = await service.add_device(ALICE, "A")
    since = (await sync(http, alice))["next_batch"]
    await service.ingest(
        [
            {
                "type": "receipt",
                "receipt": {
                    "user_id": BOB,
                    "room_id": ROOM,
                    "event_id": message,
                    "type": "m.read",
                    "timestamp": 1_700_000_000_123,
                },
            }
        ]
    )
    body = await sync(http, alice, since=since)
    assert receipts(body) == {message: {"m.read": {BOB: {"ts": 1_700_000_000_123}}}}


async def test_ephemeral_filter(service: Service, http: httpx.AsyncClient, message: str) -> None:
    bob = await service.add_device(BOB, "B")
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{message}", bob, {})
    body = await sync(http, bob, filter={"room": {"ephemeral": {"not_types": ["m.receipt"]}}})
    assert receipts(body) == {}
    body = await sync(http, bob, filter={"room": {"ephemeral": {"not_rooms": [ROOM]}}})
    assert receipts(body) == {}
    assert receipts(await sync(http, bob)) != {}
