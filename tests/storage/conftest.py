"""Fixtures for the storage tests: an opened (migrated) engine on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trio_sync.storage import Engine, open_engine


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[Engine]:
    """A freshly migrated database on the backend ``db_url`` names."""
    async with open_engine(db_url) as opened:
        yield opened
