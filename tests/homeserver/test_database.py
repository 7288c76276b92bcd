"""The read-only connection to Dendrite's database, against Dendrite's real tables."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio_asyncio

from trio_sync import Config, open_service
from trio_sync.errors import StorageError
from trio_sync.homeserver import device_for_access_token, open_homeserver_database
from trio_sync.storage import Conn, open_engine
from trio_sync.storage.accounts import Device

from ..dendrite import DendriteDatabase


async def test_token_lookup_in_dendrite_devices(dendrite_db: DendriteDatabase) -> None:
    session = await dendrite_db.add_device("@alice:example.org", "PHONE", "syt_alice_1")
    async with open_homeserver_database(dendrite_db.url) as hs:
        found = await hs.engine.read_one(device_for_access_token, "syt_alice_1")
        assert found == Device("@alice:example.org", "PHONE", session)
        assert await hs.engine.read_one(device_for_access_token, "syt_nobody") is None
        # A re-login replaces the device's token: the old one is gone.
        await dendrite_db.add_device("@alice:example.org", "PHONE", "syt_alice_2")
        assert await hs.engine.read_one(device_for_access_token, "syt_alice_1") is None
        again = await hs.engine.read_one(device_for_access_token, "syt_alice_2")
        assert again is not None and again.device_id == "PHONE"


async def test_connection_is_read_only(dendrite_db: DendriteDatabase) -> None:
    async def sneak_write(conn: Conn) -> None:
        await conn.execute("DELETE FROM userapi_devices")

    await dendrite_db.add_device("@alice:example.org", "PHONE", "syt_alice_1")
    async with open_homeserver_database(dendrite_db.url) as hs:
        with pytest.raises(StorageError, match="read-only"):
            await hs.engine.write(sneak_write)
        assert await hs.engine.read_one(device_for_access_token, "syt_alice_1") is not None


async def test_shares_the_bridge_with_postgres_storage(
    dendrite_db: DendriteDatabase, db_url: str
) -> None:
    """Storage and the homeserver database run on one trio-asyncio loop, not two.

    On SQLite storage there is no loop until the homeserver database opens one.
    """
    async with open_engine(db_url) as storage:
        outer = trio_asyncio.current_loop.get()
        assert (outer is None) == (storage.name == "sqlite")
        async with open_homeserver_database(dendrite_db.url) as hs:
            inner = trio_asyncio.current_loop.get()
            assert inner is not None and (outer is None or inner is outer)
            assert await hs.engine.read_one(device_for_access_token, "x") is None


async def test_bad_url_and_unreachable_server(dendrite_db: DendriteDatabase) -> None:
    with pytest.raises(StorageError, match="postgresql"):
        async with open_homeserver_database("sqlite:///x.db"):
            pass
    with pytest.raises(StorageError, match="cannot connect"):
        async with open_homeserver_database("postgresql://nobody@127.0.0.1:1/none"):
            pass


async def test_service_opens_the_configured_homeserver_database(
    dendrite_db: DendriteDatabase, config: Config
) -> None:
    await dendrite_db.add_device("@bob:example.org", "LAPTOP", "syt_bob")
    async with open_service(replace(config, homeserver_database=dendrite_db.url)) as service:
        assert service.homeserver_db is not None
        found = await service.homeserver_db.engine.read_one(device_for_access_token, "syt_bob")
        assert found is not None and found.user_id == "@bob:example.org"
    async with open_service(config) as service:
        assert service.homeserver_db is None
