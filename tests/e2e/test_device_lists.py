"""Device lists and keys: key changes and membership changes in device_lists, one-time key
counts, and GET /keys/changes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, SERVER, sync
from .support import ROOM, call, room_with, stays_parked, woken_by


def key_change(user: str) -> dict[str, Any]:
    """A key server's device-key update (Dendrite's DeviceMessage)."""
    keys = {"user_id": user, "device_id": "NEW", "display_name": "phone", "key_json": None}
    return {
        "type": "key_change",
        "key_change": {"Type": 0, "DeviceKeys": keys, "DeviceChangeID": 1},
    }


def device_lists(body: dict[str, Any]) -> tuple[list[str], list[str]]:
    lists = body.get("device_lists", {})
    return lists.get("changed", []), lists.get("left", [])


@pytest.fixture
async def room(service: Service) -> RoomLog:
    return await room_with(service, BOB)


async def test_local_device_key_changes_appear_in_sync_and_keys_changes(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, alice)
    since = (await sync(http, bob))["next_batch"]

    async def upload() -> None:
        await service.ingest([key_change(ALICE)])

    body = await woken_by(service, http, bob, since, upload)
    assert device_lists(body) == ([ALICE], [])
    changes = await call(http, "GET", f"/keys/changes?from={since}&to={body['next_batch']}", bob)
    assert changes == {"changed": [ALICE], "left": []}
    later = await call(
        http, "GET", f"/keys/changes?from={body['next_batch']}&to={body['next_batch']}", bob
    )
    assert later == {"changed": [], "left": []}
    # The user's own changes reach its other devices too.
    assert device_lists(await sync(http, alice, since=since))[0] == [ALICE]


async def test_key_changes_of_strangers_are_not_shown(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    since = (await sync(http, bob))["next_batch"]

    async def stranger() -> None:
        await service.ingest([key_change(CAROL)])

    await stays_parked(service, http, bob, since, stranger)
    assert device_lists(await sync(http, bob, since=since)) == ([], [])


async def test_joins_and_leaves_change_device_lists(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    alice = await service.add_device(ALICE, "A")
    since = (await sync(http, alice))["next_batch"]
    await service.ingest([room.member(ROOM, CAROL, "join")])
    body = await sync(http, alice, since=since)
    assert device_lists(body) == ([CAROL], [])
    since = body["next_batch"]
    await service.ingest([room.member(ROOM, CAROL, "leave")])
    body = await sync(http, alice, since=since)
    assert device_lists(body) == ([], [CAROL])
    # Bob leaves too, but still shares another room with Alice: not "left".
    other = f"!other:{SERVER}"
    await service.ingest([*room.create_room(other, ALICE), room.member(other, BOB, "join")])
    since = (await sync(http, alice))["next_batch"]
    await service.ingest([room.member(ROOM, BOB, "leave")])
    assert device_lists(await sync(http, alice, since=since)) == ([], [])


async def test_joining_a_room_marks_its_members_changed(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    since = (await sync(http, carol))["next_batch"]
    await service.ingest([room.member(ROOM, CAROL, "join")])
    changed, left = device_lists(await sync(http, carol, since=since))
    assert set(changed) == {ALICE, BOB, CAROL} and left == []


async def test_one_time_key_counts(service: Service, http: httpx.AsyncClient) -> None:
    alice = await service.add_device(ALICE, "A")
    assert "device_one_time_keys_count" not in await sync(http, alice)
    await service.ingest(
        [
            {
                "type": "one_time_keys",
                "one_time_keys": {
                    "user_id": ALICE,
                    "device_id": "A",
                    "one_time_key_counts": {"signed_curve25519": 50},
                    "unused_fallback_key_types": ["signed_curve25519"],
                },
            }
        ]
    )
    body = await sync(http, alice)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 50}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]
    other = await service.add_device(ALICE, "OTHER")
    assert "device_one_time_keys_count" not in await sync(http, other)


async def test_keys_changes_needs_both_tokens(service: Service, http: httpx.AsyncClient) -> None:
    alice = await service.add_device(ALICE, "A")
    token = (await sync(http, alice))["next_batch"]
    err = await call(http, "GET", f"/keys/changes?from={token}", alice, status=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    err = await call(http, "GET", f"/keys/changes?from=bad&to={token}", alice, status=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_key_counts_stay_current_in_responses_built_from_memory(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    """A typing-only response is built without storage, with cached key counts; a change
    of the counts is still seen."""
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, alice)
    since = (await sync(http, bob))["next_batch"]

    def counts(n: int) -> dict[str, Any]:
        body = {"user_id": BOB, "device_id": "B", "one_time_key_counts": {"signed_curve25519": n}}
        return {"type": "one_time_keys", "one_time_keys": body}

    async def typing(state: bool) -> None:
        path = f"/rooms/{ROOM}/typing/{ALICE}"
        await call(http, "PUT", path, alice, {"typing": state, "timeout": 30000})

    await service.ingest([counts(7)])
    await typing(True)
    body = await sync(http, bob, since=since)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 7}
    await typing(False)
    body = await sync(http, bob, since=body["next_batch"])
    assert body["rooms"]["join"][ROOM]["ephemeral"]["events"][0]["content"] == {"user_ids": []}
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 7}
    await service.ingest([counts(3)])
    await typing(True)
    body = await sync(http, bob, since=body["next_batch"])
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 3}
