"""What Dendrite's streams name but do not carry, read from Dendrite's own tables.

Dendrite's tables live in a real PostgreSQL database (``tests/dendrite.py`` creates them
as Dendrite's schema has them); trio-sync reads them through ``--homeserver-database``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from trio_sync import Config, Service, open_service
from trio_sync.bridge import run_asyncio
from trio_sync.roomlog import RoomLog

from ..dendrite import DendriteDatabase
from ..e2e.conftest import ALICE, BOB, SERVER, auth, state_ids, sync
from .conftest import DendriteBus, rejects, wait_committed
from .test_dendrite_streams import check_seed_syncs, publish_seed

ROOM = f"!federated:{SERVER}"


@pytest.fixture
async def service(js_config: Config, dendrite_db: DendriteDatabase) -> AsyncIterator[Service]:
    config = dataclasses.replace(js_config, homeserver_database=dendrite_db.url)
    async with open_service(config) as svc:
        yield svc


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as client:
        yield client


def pdu(message: dict[str, Any]) -> dict[str, Any]:
    """The event of a ``new_room_event`` as Dendrite's room server stores it."""
    event = message["new_room_event"]["event"]
    body = {k: v for k, v in event.items() if not k.startswith("_")}
    return {**body, "event_id": event["_event_id"]}


async def test_account_data_content_comes_from_dendrites_table(
    bus: DendriteBus, dendrite_db: DendriteDatabase, service: Service, http: httpx.AsyncClient
) -> None:
    token = await service.add_device(ALICE, "LAPTOP")
    start = (await sync(http, token))["next_batch"]
    settings = {"theme": "dark", "font": {"size": 14}}
    await dendrite_db.put_account_data(ALICE, "", "org.example.settings", settings)
    await bus.client_data(ALICE, "", "org.example.settings")
    # Content that changes again before the message is read: the stored one wins.
    await dendrite_db.put_account_data(ALICE, "!r:example.org", "m.tag", {"tags": {"u.a": {}}})
    await dendrite_db.put_account_data(ALICE, "!r:example.org", "m.tag", {"tags": {"u.b": {}}})
    await bus.client_data(ALICE, "!r:example.org", "m.tag")
    # Nothing stored for this one: recorded as rejected, and the stream goes on.
    await bus.client_data(ALICE, "", "org.example.missing")
    last = await bus.client_data(ALICE, "", "org.example.settings")
    await wait_committed(service, bus, "OutputClientData", last)

    body = await sync(http, token, since=start)
    account = {e["type"]: e["content"] for e in body["account_data"]["events"]}
    assert account == {"org.example.settings": settings}
    r = await http.get(
        f"/_matrix/client/v3/user/{ALICE}/rooms/!r:example.org/account_data/m.tag",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200 and r.json() == {"tags": {"u.b": {}}}
    found = await rejects(service)
    assert [(seq, reason) for _, seq, reason, _ in found] == [
        (3, "no content for account data 'org.example.missing'")
    ]


async def test_state_named_only_by_id_is_read_from_the_room_server(
    bus: DendriteBus, dendrite_db: DendriteDatabase, service: Service, http: httpx.AsyncClient
) -> None:
    # The room exists elsewhere; Alice joins it over federation. The room's state reaches
    # Dendrite as outliers, which are never published: only her join is, naming them.
    log = RoomLog(SERVER)
    history = [*log.create_room(ROOM, BOB, "Federated"), log.member(ROOM, ALICE, "join")]
    for message in history[:-1]:
        await dendrite_db.add_event(pdu(message))
    join = history[-1]
    state = [m["new_room_event"]["event"]["_event_id"] for m in history]
    join["new_room_event"]["adds_state_event_ids"] = state
    last = await bus.room_event(join)
    await wait_committed(service, bus, "OutputRoomEvent", last)
    assert await rejects(service) == []

    token = await service.add_device(ALICE, "LAPTOP")
    body = await sync(http, token)
    assert ROOM in body["rooms"]["join"]
    room = body["rooms"]["join"][ROOM]
    served = set(state_ids(body, "join", ROOM)) | {
        e["event_id"] for e in room["timeline"]["events"]
    }
    assert served == set(state)
    names = [e for e in room["state"]["events"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"] == {"name": "Federated"}


async def test_unknown_state_is_still_rejected(bus: DendriteBus, service: Service) -> None:
    log = RoomLog(SERVER)
    create = log.create_room(ROOM, BOB, "Nowhere")
    join = log.member(ROOM, ALICE, "join")
    join["new_room_event"]["adds_state_event_ids"] = [
        create[0]["new_room_event"]["event"]["_event_id"]
    ]
    last = await bus.room_event(join)
    await wait_committed(service, bus, "OutputRoomEvent", last)
    found = await rejects(service)
    assert [seq for _, seq, _, _ in found] == [last]


async def test_one_time_key_counts_come_from_dendrites_key_tables(
    dendrite_db: DendriteDatabase, service: Service, http: httpx.AsyncClient
) -> None:
    token = await service.add_device(ALICE, "PHONE")
    body = await sync(http, token)
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert body["device_unused_fallback_key_types"] == []

    async def upload_keys() -> None:
        conn = await asyncpg.connect(dendrite_db.url)
        try:
            for n in range(3):
                await conn.execute(
                    "INSERT INTO keyserver_one_time_keys (user_id, device_id, key_id, "
                    "algorithm, ts_added_secs, key_json) "
                    "VALUES ($1, 'PHONE', $2, 'signed_curve25519', 0, '{}')",
                    ALICE,
                    f"AAAA{n}",
                )
            await conn.execute(
                "INSERT INTO keyserver_fallback_keys (user_id, device_id, key_id, algorithm, "
                "ts_added_secs, key_json, used) "
                "VALUES ($1, 'PHONE', 'F', 'signed_curve25519', 0, '{}', false)",
                ALICE,
            )
        finally:
            await conn.close()

    await run_asyncio(upload_keys)
    body = await sync(http, token, since=body["next_batch"])
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 3}
    assert body["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_seed_example_with_a_token_only_dendrite_knows(
    bus: DendriteBus, js_config: Config, dendrite_db: DendriteDatabase
) -> None:
    """Beside Dendrite: the events come from its streams and the client's access token
    exists only in Dendrite's devices table (``--auth homeserver-database``)."""
    config = dataclasses.replace(
        js_config, homeserver_database=dendrite_db.url, auth="homeserver-database"
    )
    await dendrite_db.add_device(ALICE, "DENDRITE", "syt_only_in_dendrite")
    labels, last = await publish_seed(bus)
    async with (
        open_service(config) as svc,
        httpx.AsyncClient(base_url=svc.addresses[0], timeout=30) as client,
    ):
        await wait_committed(svc, bus, "OutputRoomEvent", last)
        await check_seed_syncs(client, "syt_only_in_dendrite", labels)
        # A token Dendrite does not have is refused.
        r = await client.get("/_matrix/client/v3/sync", headers=auth("syt_unknown"))
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        assert await rejects(svc) == []
