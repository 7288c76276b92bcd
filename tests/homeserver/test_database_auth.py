"""``auth = homeserver-database``: tokens from Dendrite's devices table (real tables in a
real PostgreSQL database), for a device trio-sync never registered."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest
import trio

from trio_sync import Config, open_service

from ..dendrite import DendriteDatabase
from ..e2e.conftest import SYNC_PATH, auth, sync

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


def _checking(config: Config, dendrite_db: DendriteDatabase, **settings: float) -> Config:
    """``config`` checking tokens in Dendrite's devices table, with ``settings``."""
    return replace(
        config, auth="homeserver-database", homeserver_database=dendrite_db.url, **settings
    )


async def test_sync_with_a_dendrite_token(config: Config, dendrite_db: DendriteDatabase) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    cfg = _checking(config, dendrite_db, auth_cache_ttl=60.0)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        first = await sync(http, "syt_alice")
        again = await sync(http, "syt_alice", since=first["next_batch"], timeout=0)
        assert again["next_batch"]
        assert svc.auth.lookups == 1
        # trio-sync's own tokens are not accepted in this mode.
        local = await svc.add_device(ALICE, "LOCAL")
        r = await http.get(SYNC_PATH, headers=auth(local))
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
        # A logout in Dendrite shows once the cached answer is forgotten (auth_cache_ttl).
        await dendrite_db.remove_device(ALICE, "PHONE")
        svc.auth.cache.clear()
        r = await http.get(SYNC_PATH, headers=auth("syt_alice"))
        assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


async def _first_refusal(http: httpx.AsyncClient, token: str, within: float) -> float:
    """Seconds until ``token`` is refused (polling every 20 ms, ``within`` at most)."""
    started = time.monotonic()
    with trio.fail_after(within):
        # Polling another system (Dendrite's table) through trio-sync: nothing to wait on.
        while (await http.get(SYNC_PATH, headers=auth(token))).status_code != 401:  # noqa: ASYNC110
            await trio.sleep(0.02)
    return time.monotonic() - started


async def test_a_logout_is_honoured_within_the_recheck_interval(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    await dendrite_db.add_device(BOB, "LAPTOP", "syt_bob")
    cfg = _checking(config, dendrite_db, auth_cache_ttl=3600.0, auth_recheck_interval=0.3)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        await sync(http, "syt_alice")
        await sync(http, "syt_bob")
        await trio.sleep(1)  # several re-checks: both tokens stay valid and cached
        await sync(http, "syt_alice", timeout=0)
        assert svc.auth.lookups == 2
        # Logged out in Dendrite: refused within the interval (plus a query), not the TTL.
        await dendrite_db.remove_device(ALICE, "PHONE")
        assert await _first_refusal(http, "syt_alice", within=5) < 2
        # The other device was re-checked too, and is still answered from the cache.
        await sync(http, "syt_bob", timeout=0)
        assert svc.auth.lookups == 3


async def test_without_recheck_a_logout_waits_for_the_ttl(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    cfg = _checking(config, dendrite_db, auth_cache_ttl=1.0, auth_recheck_interval=0)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        await sync(http, "syt_alice")
        await dendrite_db.remove_device(ALICE, "PHONE")
        await trio.sleep(0.5)
        await sync(http, "syt_alice", timeout=0)  # still cached: nothing re-checked it
        assert await _first_refusal(http, "syt_alice", within=5) < 1.5


async def test_no_caching_when_the_ttl_is_zero(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    cfg = _checking(config, dendrite_db, auth_cache_ttl=0)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        await sync(http, "syt_alice")
        await dendrite_db.remove_device(ALICE, "PHONE")
        r = await http.get(SYNC_PATH, headers=auth("syt_alice"))
        assert r.status_code == 401
        await dendrite_db.add_device(ALICE, "PHONE", "syt_alice_2")
        await sync(http, "syt_alice_2")


async def test_homeserver_database_mode_needs_the_database(config: Config) -> None:
    with pytest.raises(ValueError, match="homeserver_database"):
        async with open_service(replace(config, auth="homeserver-database")):
            pass
    with pytest.raises(ValueError, match="auth must be one of"):
        async with open_service(replace(config, auth="ldap")):
            pass
