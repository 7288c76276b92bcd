"""``auth = homeserver-database``: tokens from Dendrite's devices table (real tables in a
real PostgreSQL database), for a device trio-sync never registered."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from trio_sync import Config, open_service

from ..dendrite import DendriteDatabase
from ..e2e.conftest import SYNC_PATH, auth, sync

ALICE = "@alice:example.org"


async def test_sync_with_a_dendrite_token(config: Config, dendrite_db: DendriteDatabase) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    cfg = replace(
        config,
        auth="homeserver-database",
        homeserver_database=dendrite_db.url,
        auth_cache_ttl=60.0,
    )
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


async def test_no_caching_when_the_ttl_is_zero(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice")
    cfg = replace(
        config, auth="homeserver-database", homeserver_database=dendrite_db.url, auth_cache_ttl=0
    )
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
