"""Fixtures for the storage tests: an opened (migrated) engine on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from trio_sync.ingest import Ingestor
from trio_sync.ingest.runner import current_token
from trio_sync.notifier import Notifier
from trio_sync.storage import Engine, open_engine


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    """A freshly migrated database on the backend ``db_url`` names."""
    async with open_engine(db_url) as opened:
        yield opened


@pytest.fixture
async def ingestor(engine: Engine) -> AsyncIterator[Ingestor]:
    """The ingest task, running."""
    async with trio.open_nursery() as nursery:
        notifier = Notifier(await engine.read(current_token))
        task = Ingestor(engine, notifier, retry_delay=0.01)
        await nursery.start(task.run)
        yield task
        nursery.cancel_scope.cancel()
