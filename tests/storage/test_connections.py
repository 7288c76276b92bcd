"""Connections: single-statement reads, and recovery when PostgreSQL drops a connection."""

from __future__ import annotations

import pytest
import trio
import trio_asyncio

from trio_sync.errors import StorageError
from trio_sync.storage import Engine, open_engine
from trio_sync.storage.accounts import add_device, device_for_token

from ..conftest import PG_DSN, terminate_backends


async def test_read_one_sees_committed_writes(engine: Engine) -> None:
    await engine.write(add_device, "@a:x", "PHONE", "tok")
    device = await engine.read_one(device_for_token, "tok")
    assert device is not None and device.device_id == "PHONE"
    assert await engine.read_one(device_for_token, "other") is None


if PG_DSN:

    @pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
    async def test_engine_reconnects_after_postgres_drops_its_connections(db_url: str) -> None:
        dbname = db_url.rpartition("/")[2]
        async with open_engine(db_url) as engine:
            await engine.write(add_device, "@a:x", "PHONE", "tok")
            assert await engine.read(device_for_token, "tok") is not None
            killed = await trio_asyncio.aio_as_trio(terminate_backends)(dbname)
            assert killed >= 1
            await trio.sleep(0.1)
            # The first use of a dropped connection may fail; the engine must then recover.
            for _ in range(10):
                try:
                    assert await engine.read(device_for_token, "tok") is not None
                    await engine.write(add_device, "@b:x", "PHONE", "tok2")
                    break
                except StorageError:
                    continue
            else:
                raise AssertionError("the engine never recovered its connections")
            assert await engine.read_one(device_for_token, "tok2") is not None
