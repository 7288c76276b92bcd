"""The trio-asyncio bridge: an error asyncio can raise to nobody does not end the loop."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
import trio

from trio_sync.bridge import open_bridge, run_asyncio


async def _orphan_an_exception() -> None:
    """What asyncpg's connection probe leaves when the server cuts a connection being
    made: a future holding an exception nobody will retrieve."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(ConnectionError("cut while connecting"))
    del future
    gc.collect()  # asyncio reports the unretrieved exception now
    await asyncio.sleep(0)


async def _answer() -> int:
    await asyncio.sleep(0)
    return 42


async def test_an_exception_nobody_retrieves_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_sync.bridge")
    async with open_bridge():
        await run_asyncio(_orphan_an_exception)
        await trio.sleep(0.05)
        assert await run_asyncio(_answer) == 42
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_sync.bridge"]
    assert len(lines) == 1
    assert "cut while connecting" in lines[0]
    assert "never retrieved" in lines[0]
