"""``auth = local``: the token cache is exact — a change in any process is seen by the
next request — and bounded against floods of made-up tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import httpx
import trio

from trio_sync import Config, Service, open_service

from ..e2e.conftest import ALICE, SYNC_PATH, auth, sync


async def run_cli(config: Config, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``trio-sync`` command line in another process."""
    return await trio.run_process(
        [sys.executable, "-m", "trio_sync.cli", *args, "--database", config.database]
        + (["--server-name", config.server_name] if args[:2] == ("token", "add") else []),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


async def cli(config: Config, *args: str) -> str:
    """:func:`run_cli`, which must succeed; its stdout."""
    done = await run_cli(config, *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def status(http: httpx.AsyncClient, token: str) -> int:
    r = await http.get(SYNC_PATH, params={"timeout": "0"}, headers=auth(token))
    return r.status_code


async def settled(service: Service, http: httpx.AsyncClient, token: str) -> None:
    """Wait until ``token`` is answered without a lookup: on PostgreSQL the server's own
    last change comes back as a notification, which clears the cache once more."""
    for _ in range(100):
        before = service.auth.lookups
        assert await status(http, token) == 200
        if service.auth.lookups == before:
            return
    raise AssertionError("the token cache never settled")


async def test_token_changes_in_another_process_apply_at_once(
    service: Service, http: httpx.AsyncClient, config: Config
) -> None:
    token = await service.add_device(ALICE, "PHONE")
    await sync(http, token)
    assert await status(http, token) == 200  # now answered from the cache
    looked_up = service.auth.lookups

    await cli(config, "token", "revoke", "--user", ALICE, "--device", "PHONE")
    assert await status(http, token) == 401

    # Re-added by the other process: works on the very next request, although the
    # rejection was just cached.
    await cli(config, "token", "add", ALICE, "PHONE", "--token", token)
    assert await status(http, token) == 200

    # Replaced by the other process: the old token stops, the new one works.
    new = (await cli(config, "token", "add", ALICE, "PHONE")).strip()
    assert await status(http, token) == 401
    assert await status(http, new) == 200
    # Every change cost one lookup, not one per request.
    assert service.auth.lookups - looked_up <= 5


async def test_in_process_changes_apply_at_once(service: Service, http: httpx.AsyncClient) -> None:
    token = await service.add_device(ALICE, "PHONE")
    assert await status(http, token) == 200
    assert await service.remove_device(ALICE, "PHONE")
    assert await status(http, token) == 401
    await service.add_device(ALICE, "PHONE", token)
    assert await status(http, token) == 200
    other = await service.add_device(ALICE, "PHONE")
    assert (await status(http, token), await status(http, other)) == (401, 200)
    assert not await service.remove_device(ALICE, "NO_SUCH_DEVICE")


async def test_known_tokens_cost_no_lookup(service: Service, http: httpx.AsyncClient) -> None:
    token = await service.add_device(ALICE, "PHONE")
    first = await sync(http, token)
    # PostgreSQL echoes our own add_device back as a notification, which may clear the
    # cache once more after the first request: wait for a request that costs nothing.
    for _ in range(100):
        before = service.auth.lookups
        await sync(http, token, since=first["next_batch"], timeout=0)
        if service.auth.lookups == before:
            break
    for _ in range(20):
        await sync(http, token, since=first["next_batch"], timeout=0)
    assert service.auth.lookups == before


async def test_flood_of_bad_tokens_is_bounded(config: Config) -> None:
    cfg = replace(config, auth_cache_size=100)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        good = await svc.add_device(ALICE, "PHONE")
        await settled(svc, http, good)
        # The same bad token again and again: one lookup.
        before = svc.auth.lookups
        for _ in range(30):
            assert await status(http, "bad_token") == 401
        assert svc.auth.lookups - before == 1
        # Many different bad tokens: memory stays within the bound.
        for n in range(300):
            assert await status(http, f"bad_{n}") == 401
        assert len(svc.auth.cache) <= 100 + 10
        # The good token is still answered (from the cache: no lookup).
        before = svc.auth.lookups
        assert await status(http, good) == 200
        assert svc.auth.lookups == before
