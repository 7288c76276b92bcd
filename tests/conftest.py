"""Shared fixtures: a database URL per backend, a running service over real HTTP.

PostgreSQL runs whenever ``TRIO_SYNC_TEST_POSTGRES`` names a server (a DSN such as
``postgresql://postgres@127.0.0.1:5432/postgres``); each test gets a database of its own,
cloned from a migrated template. If that server cannot be reached, the tests fail.
"""

from __future__ import annotations

import asyncio
import copy
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from trio_sync import Config, Service, open_service

PG_DSN = os.environ.get("TRIO_SYNC_TEST_POSTGRES")
BACKENDS = ["sqlite", "postgres"] if PG_DSN else ["sqlite"]


def pytest_report_header() -> str:
    if PG_DSN:
        return f"trio-sync backends: sqlite, postgres ({PG_DSN})"
    return "trio-sync backends: sqlite only (set TRIO_SYNC_TEST_POSTGRES to add postgres)"


def _pg_url(dbname: str) -> str:
    assert PG_DSN is not None
    base, _, _ = PG_DSN.rpartition("/")
    return f"{base}/{dbname}"


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def terminate_backends(dbname: str) -> int:
    """Cut every connection to ``dbname`` but the admin's own (asyncio); how many were cut."""
    admin = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        return int(
            await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                dbname,
            )
        )
    finally:
        await admin.close()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'trio-sync.db'}"
        return
    name = f"trio_sync_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _pg_url(name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def config(db_url: str) -> Config:
    return Config(
        database=db_url,
        listen="127.0.0.1:0",
        server_name="example.org",
        ingest_secret="test-secret",
        graceful_timeout=2.0,
    )


@pytest.fixture
async def service(config: Config) -> AsyncIterator[Service]:
    """The whole service, serving real HTTP through Hypercorn on a free port."""
    async with open_service(config) as svc:
        yield svc


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as client:
        yield client


def nio_accepts(body: dict[str, Any]) -> None:
    """Fail unless matrix-nio parses ``body`` as a SyncResponse (not a SyncError)."""
    import nio

    parsed = nio.SyncResponse.from_dict(copy.deepcopy(body))
    assert isinstance(parsed, nio.SyncResponse), f"matrix-nio rejected the body: {parsed}"


# Dendrite's tables in a fresh PostgreSQL database (tests/dendrite.py).
from .dendrite import dendrite_db  # noqa: E402

__all__ = ["dendrite_db"]
