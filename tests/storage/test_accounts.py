"""Devices, access tokens and stored filters."""

from __future__ import annotations

import pytest
import trio

from trio_sync.storage import Engine, StorageError, open_engine
from trio_sync.storage.accounts import (
    Device,
    add_device,
    device_exists,
    device_for_token,
    hash_token,
    list_devices,
    load_filter,
    new_token,
    remove_device,
    remove_device_of_token,
    store_filter,
    token_owner,
    validate_device_ids,
)

from .support import ALICE, BOB, query


async def test_token_finds_its_device(engine: Engine) -> None:
    await engine.write(add_device, ALICE, "PHONE", "alice-phone-token", 7)
    await engine.write(add_device, ALICE, "LAPTOP", "alice-laptop-token")
    await engine.write(add_device, BOB, "PHONE", "bob-phone-token")
    assert await engine.read(device_for_token, "alice-phone-token") == Device(ALICE, "PHONE", 7)
    assert await engine.read(device_for_token, "alice-laptop-token") == Device(
        ALICE, "LAPTOP", None
    )
    assert await engine.read(device_for_token, "bob-phone-token") == Device(BOB, "PHONE", None)


async def test_unknown_token_finds_nothing(engine: Engine) -> None:
    await engine.write(add_device, ALICE, "PHONE", "right-token")
    for token in ("wrong-token", "", "right-token ", "RIGHT-TOKEN", hash_token("right-token")):
        assert await engine.read(device_for_token, token) is None, token


async def test_tokens_are_not_stored_in_the_clear(engine: Engine) -> None:
    token = new_token()
    await engine.write(add_device, ALICE, "PHONE", token)
    rows = await query(engine, "SELECT * FROM devices")
    assert len(rows) == 1
    assert all(token not in str(value) for value in rows[0])


async def test_rekeyed_device_accepts_only_its_new_token(engine: Engine) -> None:
    await engine.write(add_device, ALICE, "PHONE", "old-token", 1)
    await engine.write(add_device, ALICE, "PHONE", "new-token", 2)
    assert await engine.read(device_for_token, "old-token") is None
    assert await engine.read(device_for_token, "new-token") == Device(ALICE, "PHONE", 2)
    assert await query(engine, "SELECT COUNT(*) FROM devices") == [(1,)]


async def test_a_token_cannot_belong_to_two_devices(engine: Engine) -> None:
    await engine.write(add_device, ALICE, "PHONE", "shared")
    with pytest.raises(StorageError):
        await engine.write(add_device, BOB, "PHONE", "shared")
    assert await engine.read(device_for_token, "shared") == Device(ALICE, "PHONE", None)


async def test_devices_survive_a_restart(db_url: str) -> None:
    token = new_token()
    async with open_engine(db_url) as engine:
        await engine.write(add_device, ALICE, "PHONE", token)
    async with open_engine(db_url) as engine:
        assert await engine.read(device_for_token, token) == Device(ALICE, "PHONE", None)


async def test_filters_are_numbered_per_user(engine: Engine) -> None:
    a0 = await engine.write(store_filter, ALICE, '{"room":{"timeline":{"limit":1}}}')
    a1 = await engine.write(store_filter, ALICE, '{"room":{"timeline":{"limit":2}}}')
    b0 = await engine.write(store_filter, BOB, '{"room":{"timeline":{"limit":2}}}')
    assert (a0, a1, b0) == (0, 1, 0)
    assert await engine.read(load_filter, ALICE, 1) == '{"room":{"timeline":{"limit":2}}}'
    assert await engine.read(load_filter, BOB, 0) == '{"room":{"timeline":{"limit":2}}}'


async def test_identical_filter_keeps_its_id(engine: Engine) -> None:
    first = await engine.write(store_filter, ALICE, '{"a":1}')
    await engine.write(store_filter, ALICE, '{"b":2}')
    assert await engine.write(store_filter, ALICE, '{"a":1}') == first
    assert await query(engine, "SELECT COUNT(*) FROM filters") == [(2,)]


async def test_filter_lookup_misses(engine: Engine) -> None:
    await engine.write(store_filter, ALICE, '{"a":1}')
    assert await engine.read(load_filter, ALICE, 1) is None
    assert await engine.read(load_filter, BOB, 0) is None  # another user's filter


async def test_concurrently_stored_filters_get_distinct_ids(engine: Engine) -> None:
    ids: dict[str, int] = {}

    async def store(n: int) -> None:
        body = f'{{"n":{n}}}'
        ids[body] = await engine.write(store_filter, ALICE, body)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(store, n)
    assert sorted(ids.values()) == list(range(20))
    for body, filter_id in ids.items():
        assert await engine.read(load_filter, ALICE, filter_id) == body


async def test_listing_and_revoking_devices(engine: Engine) -> None:
    await engine.write(add_device, "@b:x", "PHONE", "tok-b")
    await engine.write(add_device, "@a:x", "LAPTOP", "tok-a1")
    await engine.write(add_device, "@a:x", "PHONE", "tok-a2")
    listed = [(d.user_id, d.device_id) for d in await engine.read(list_devices)]
    assert listed == [("@a:x", "LAPTOP"), ("@a:x", "PHONE"), ("@b:x", "PHONE")]
    assert [d.device_id for d in await engine.read(list_devices, "@a:x")] == ["LAPTOP", "PHONE"]
    assert await engine.read(token_owner, "tok-a2") == ("@a:x", "PHONE")

    assert await engine.write(remove_device_of_token, "tok-a2") == ("@a:x", "PHONE")
    assert await engine.write(remove_device_of_token, "tok-a2") is None
    assert await engine.read(device_for_token, "tok-a2") is None
    assert await engine.write(remove_device, "@b:x", "PHONE") is True
    assert await engine.write(remove_device, "@b:x", "PHONE") is False
    assert await engine.read(device_for_token, "tok-b") is None
    assert await engine.read(device_for_token, "tok-a1") is not None
    assert not await engine.read(device_exists, "@b:x", "PHONE")
    assert await engine.read(device_exists, "@a:x", "LAPTOP")


@pytest.mark.parametrize(
    ("user_id", "device_id", "problem"),
    [
        ("alice", "D", "not a user ID"),
        ("@:example.org", "D", "not a user ID"),
        ("@alice:", "D", "not a user ID"),
        ("@al ice:example.org", "D", "not a user ID"),
        ("@alice:other.org", "D", "not a user of this server"),
        ("@alice:example.org", "", "1 to 255"),
        ("@alice:example.org", "A B", "not a device ID"),
    ],
)
def test_device_ids_are_validated(user_id: str, device_id: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_device_ids(user_id, device_id, "example.org")
    validate_device_ids("@alice:example.org", "PHONE", "example.org")
