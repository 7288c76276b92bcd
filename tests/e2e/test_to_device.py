"""To-device messages: delivered until acknowledged, deduplicated by transaction, the
wildcard device, only the target device woken, at most 100 per response."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, sync, token_fields
from .support import call, stays_parked, woken_by


def to_device(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body.get("to_device", {}).get("events", [])
    return events


async def send(
    http: httpx.AsyncClient, token: str, txn: str, messages: dict[str, Any], kind: str = "m.test"
) -> None:
    await call(http, "PUT", f"/sendToDevice/{kind}/{txn}", token, {"messages": messages})


@pytest.fixture
async def devices(service: Service) -> dict[str, str]:
    """Alice's device A; Bob's devices B1 and B2 (no rooms needed)."""
    return {
        "A": await service.add_device(ALICE, "A"),
        "B1": await service.add_device(BOB, "B1"),
        "B2": await service.add_device(BOB, "B2"),
    }


async def test_can_receive_device_messages_until_they_are_acknowledged(
    http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    since = (await sync(http, devices["B1"]))["next_batch"]
    await send(http, devices["A"], "t1", {BOB: {"B1": {"n": 1}}})
    first = await sync(http, devices["B1"], since=since)
    assert to_device(first) == [{"sender": ALICE, "type": "m.test", "content": {"n": 1}}]
    # Not acknowledged (same since): delivered again.
    again = await sync(http, devices["B1"], since=since)
    assert to_device(again) == to_device(first)
    # A complete sync also delivers what is not acknowledged.
    assert to_device(await sync(http, devices["B1"])) == to_device(first)
    # Acknowledged by the later since: gone.
    after = await sync(http, devices["B1"], since=first["next_batch"])
    assert to_device(after) == []
    assert to_device(await sync(http, devices["B1"], since=since)) == []
    # The other device never got it.
    assert to_device(await sync(http, devices["B2"])) == []


async def test_device_messages_with_the_same_txn_id_are_deduplicated(
    service: Service, http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    since = (await sync(http, devices["B1"]))["next_batch"]
    for _ in range(2):
        await send(http, devices["A"], "same", {BOB: {"B1": {"n": 1}, "B2": {"n": 2}}})
    body = await sync(http, devices["B1"], since=since)
    assert [e["content"] for e in to_device(body)] == [{"n": 1}]
    await sync(http, devices["B1"], since=body["next_batch"])
    # Even after delivery, the retry adds nothing.
    await send(http, devices["A"], "same", {BOB: {"B1": {"n": 1}}})
    assert to_device(await sync(http, devices["B1"], since=body["next_batch"])) == []
    # Another sending device may use the same txn_id.
    other = await service.add_device(ALICE, "A2")
    await send(http, other, "same", {BOB: {"B1": {"n": 3}}})
    assert [
        e["content"] for e in to_device(await sync(http, devices["B1"], since=body["next_batch"]))
    ] == [{"n": 3}]


async def test_wildcard_device_messages_wake_up_sync(
    service: Service, http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    since = (await sync(http, devices["B1"]))["next_batch"]

    async def wildcard() -> None:
        await send(http, devices["A"], "w1", {BOB: {"*": {"all": True}}})

    body = await woken_by(service, http, devices["B1"], since, wildcard)
    assert [e["content"] for e in to_device(body)] == [{"all": True}]
    assert [e["content"] for e in to_device(await sync(http, devices["B2"]))] == [{"all": True}]


async def test_only_the_target_device_is_woken(
    service: Service, http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    b2_since = (await sync(http, devices["B2"]))["next_batch"]
    b1_since = (await sync(http, devices["B1"]))["next_batch"]

    async def to_b1() -> None:
        await send(http, devices["A"], "only-b1", {BOB: {"B1": {"for": "B1"}}})

    await stays_parked(service, http, devices["B2"], b2_since, to_b1)
    body = await sync(http, devices["B1"], since=b1_since)
    assert [e["content"] for e in to_device(body)] == [{"for": "B1"}]

    async def to_b1_again() -> None:
        await send(http, devices["A"], "again", {BOB: {"B1": {"n": 2}}})

    woken = await woken_by(service, http, devices["B1"], body["next_batch"], to_b1_again)
    assert [e["content"] for e in to_device(woken)] == [{"n": 2}]


async def test_at_most_100_per_response_and_the_rest_at_once(
    service: Service, http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    since = (await sync(http, devices["B1"]))["next_batch"]
    await send(http, devices["A"], "many-1", {BOB: {"B1": {"n": 0}}})
    messages = [
        {
            "type": "send_to_device",
            "send_to_device": {
                "user_id": BOB,
                "device_id": "B1",
                "sender": ALICE,
                "type": "m.test",
                "content": {"n": n},
            },
        }
        for n in range(1, 150)
    ]
    await service.ingest(messages)
    first = await sync(http, devices["B1"], since=since, timeout=20000)
    assert [e["content"]["n"] for e in to_device(first)] == list(range(100))
    assert token_fields(first["next_batch"])[4] < service.notifier.current.to_device
    # The rest comes at once, though the client asks to wait.
    second = await sync(http, devices["B1"], since=first["next_batch"], timeout=20000)
    assert [e["content"]["n"] for e in to_device(second)] == list(range(100, 150))
    third = await sync(http, devices["B1"], since=second["next_batch"])
    assert to_device(third) == []


async def test_bad_send_to_device_requests(
    http: httpx.AsyncClient, devices: dict[str, str]
) -> None:
    a = devices["A"]
    for body in ({}, {"messages": []}, {"messages": {"bob": {}}}, {"messages": {BOB: {"B1": 1}}}):
        err = await call(http, "PUT", "/sendToDevice/m.test/bad", a, body, status=400)
        assert err["errcode"] == "M_BAD_JSON", body
    err = await call(http, "PUT", "/sendToDevice/m.test/bad", a, content=b"x", status=400)
    assert err["errcode"] == "M_NOT_JSON"
    await call(http, "PUT", "/sendToDevice/m.test/empty", a, {"messages": {}})
