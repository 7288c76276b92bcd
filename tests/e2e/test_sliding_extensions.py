"""Sliding sync extensions: to_device (delivered until acknowledged by ``since``), e2ee,
account_data, receipts and typing — each for the rooms it covers, and nothing when
disabled."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB
from .sliding_support import parked_then, room_id, room_list, rooms_in_order, sliding
from .support import call


@pytest.fixture
async def tokens(service: Service) -> dict[str, str]:
    await rooms_in_order(service, 2, BOB)
    return {
        "alice": await service.add_device(ALICE, "PHONE"),
        "bob": await service.add_device(BOB, "B"),
    }


def extensions(**enabled: dict[str, Any]) -> dict[str, Any]:
    return {name: {"enabled": True, **value} for name, value in enabled.items()}


async def test_to_device_is_delivered_until_acknowledged(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await call(
        http,
        "PUT",
        "/sendToDevice/m.test/t1",
        tokens["bob"],
        {"messages": {ALICE: {"PHONE": {"n": 1}}}},
    )
    first = await sliding(http, tokens["alice"], {"extensions": extensions(to_device={})})
    got = first["extensions"]["to_device"]
    assert [e["content"] for e in got["events"]] == [{"n": 1}]
    # Without acknowledging, the same message again.
    again = await sliding(
        http, tokens["alice"], {"extensions": extensions(to_device={})}, pos=first["pos"]
    )
    assert [e["content"] for e in again["extensions"]["to_device"]["events"]] == [{"n": 1}]
    since = got["next_batch"]
    done = await sliding(
        http,
        tokens["alice"],
        {"extensions": extensions(to_device={"since": since})},
        pos=first["pos"],
    )
    assert done["extensions"]["to_device"]["events"] == []

    async def send() -> None:
        await call(
            http,
            "PUT",
            "/sendToDevice/m.test/t2",
            tokens["bob"],
            {"messages": {ALICE: {"PHONE": {"n": 2}}}},
        )

    body = await parked_then(
        service,
        http,
        tokens["alice"],
        {"extensions": extensions(to_device={"since": since})},
        done["pos"],
        send,
    )
    assert body is not None
    assert [e["content"] for e in body["extensions"]["to_device"]["events"]] == [{"n": 2}]


async def test_to_device_limit(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    for n in range(3):
        await call(
            http,
            "PUT",
            f"/sendToDevice/m.test/l{n}",
            tokens["bob"],
            {"messages": {ALICE: {"PHONE": {"n": n}}}},
        )
    first = await sliding(http, tokens["alice"], {"extensions": extensions(to_device={"limit": 2})})
    assert [e["content"]["n"] for e in first["extensions"]["to_device"]["events"]] == [0, 1]
    since = first["extensions"]["to_device"]["next_batch"]
    rest = await sliding(
        http,
        tokens["alice"],
        {"extensions": extensions(to_device={"since": since, "limit": 2})},
        pos=first["pos"],
    )
    assert [e["content"]["n"] for e in rest["extensions"]["to_device"]["events"]] == [2]


async def test_e2ee_key_counts_and_device_list_changes(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await service.ingest(
        [
            {
                "type": "one_time_keys",
                "one_time_keys": {
                    "user_id": ALICE,
                    "device_id": "PHONE",
                    "one_time_key_counts": {"signed_curve25519": 50},
                    "unused_fallback_key_types": ["signed_curve25519"],
                },
            }
        ]
    )
    request = {"extensions": extensions(e2ee={})}
    first = await sliding(http, tokens["alice"], request)
    e2ee = first["extensions"]["e2ee"]
    assert e2ee["device_one_time_keys_count"] == {"signed_curve25519": 50}
    assert e2ee["device_unused_fallback_key_types"] == ["signed_curve25519"]

    async def bob_keys() -> None:
        await service.ingest(
            [
                {
                    "type": "key_change",
                    "key_change": {
                        "Type": 0,
                        "DeviceKeys": {
                            "user_id": BOB,
                            "device_id": "B",
                            "display_name": "b",
                            "key_json": {},
                        },
                        "DeviceChangeID": 1,
                    },
                }
            ]
        )

    body = await parked_then(service, http, tokens["alice"], request, first["pos"], bob_keys)
    assert body is not None
    assert body["extensions"]["e2ee"]["device_lists"]["changed"] == [BOB]


async def test_account_data_receipts_and_typing(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    alice = tokens["alice"]
    await call(http, "PUT", f"/user/{ALICE}/account_data/m.custom", alice, {"a": 1})
    await call(http, "PUT", f"/user/{ALICE}/rooms/{room_id(0)}/account_data/m.r", alice, {"r": 0})
    request = {
        "lists": {"all": room_list(0, 0)},
        "extensions": extensions(account_data={}, receipts={}, typing={}),
    }
    first = await sliding(http, alice, request)
    data = first["extensions"]["account_data"]
    assert {e["type"]: e["content"] for e in data["global"]}["m.custom"] == {"a": 1}
    # Room 0 is outside the window (room 1 is newest): its account data is not sent.
    assert data["rooms"] == {}
    # Subscribing sends it (a room sent for the first time gets all of its account data).
    sub = await sliding(
        http,
        alice,
        {**request, "room_subscriptions": {room_id(0): {"timeline_limit": 1}}},
        pos=first["pos"],
    )
    rooms = sub["extensions"]["account_data"]["rooms"]
    assert [e["content"] for e in rooms[room_id(0)]] == [{"r": 0}]
    event = sub["rooms"][room_id(0)]["timeline"][-1]["event_id"]

    async def receipt() -> None:
        await call(http, "POST", f"/rooms/{room_id(0)}/receipt/m.read/{event}", tokens["bob"], {})

    body = await parked_then(service, http, alice, request, sub["pos"], receipt)
    assert body is not None
    content = body["extensions"]["receipts"]["rooms"][room_id(0)]["content"]
    assert BOB in content[event]["m.read"]

    async def typing() -> None:
        await call(
            http,
            "PUT",
            f"/rooms/{room_id(1)}/typing/{BOB}",
            tokens["bob"],
            {"typing": True, "timeout": 30000},
        )

    body2 = await parked_then(service, http, alice, request, body["pos"], typing)
    assert body2 is not None
    assert body2["extensions"]["typing"]["rooms"][room_id(1)]["content"]["user_ids"] == [BOB]


async def test_disabled_extensions_are_absent(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    body = await sliding(
        http,
        tokens["alice"],
        {"extensions": {"to_device": {"enabled": False}, "e2ee": {}}},
    )
    assert body["extensions"] == {}
