"""``auth = whoami``: tokens checked by a real HTTP homeserver stand-in, one check per
cache period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
import trio

from trio_sync import Config, Service, open_service

from ..e2e.conftest import SYNC_PATH, auth, sync, wait_until
from .upstream import Upstream, run_upstream

ALICE = "@alice:example.org"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with run_upstream() as up:
        up.tokens["hs_alice"] = (ALICE, "PHONE")
        yield up


@pytest.fixture
async def whoami_service(config: Config, upstream: Upstream) -> AsyncIterator[Service]:
    cfg = replace(config, auth="whoami", homeserver_url=upstream.url, auth_cache_ttl=60.0)
    async with open_service(cfg) as svc:
        yield svc


@pytest.fixture
async def client(whoami_service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=whoami_service.addresses[0], timeout=30) as c:
        yield c


async def test_sync_with_a_homeserver_token(
    whoami_service: Service, client: httpx.AsyncClient, upstream: Upstream
) -> None:
    first = await sync(client, "hs_alice")
    for _ in range(4):
        await sync(client, "hs_alice", since=first["next_batch"], timeout=0)
    # Five requests, one check: the answer is cached for auth_cache_ttl.
    assert upstream.whoami_calls() == 1
    sent = next(h for _, p, h in upstream.requests if p.endswith("/whoami"))
    assert sent["authorization"] == "Bearer hs_alice"
    # The device exists only at the homeserver, yet its per-device streams work.
    await whoami_service.ingest(
        [
            {
                "type": "send_to_device",
                "send_to_device": {
                    "sender": "@bob:example.org",
                    "user_id": ALICE,
                    "device_id": "PHONE",
                    "type": "m.test",
                    "content": {"n": 1},
                },
            }
        ]
    )
    body = await sync(client, "hs_alice", since=first["next_batch"], timeout=0)
    assert [e["content"] for e in body["to_device"]["events"]] == [{"n": 1}]


async def test_unknown_token_is_rejected_and_the_rejection_cached(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    for _ in range(3):
        r = await client.get(SYNC_PATH, headers=auth("made_up"))
        assert r.status_code == 401
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert upstream.whoami_calls() == 1


async def test_concurrent_requests_share_one_check(
    whoami_service: Service, client: httpx.AsyncClient, upstream: Upstream
) -> None:
    upstream.gate = trio.Event()
    codes: list[int] = []

    async def one() -> None:
        r = await client.get(SYNC_PATH, params={"timeout": "0"}, headers=auth("hs_alice"))
        codes.append(r.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
        await wait_until(lambda: len(whoami_service.auth._pending) == 1)
        await wait_until(lambda: upstream.whoami_calls() == 1)
        await trio.sleep(0.2)  # let the other nine arrive and wait on the first check
        upstream.gate.set()
    assert codes == [200] * 10
    assert upstream.whoami_calls() == 1


async def test_homeserver_errors_become_matrix_errors(
    whoami_service: Service, client: httpx.AsyncClient, upstream: Upstream
) -> None:
    upstream.whoami_answer = (403, {"errcode": "M_USER_DEACTIVATED", "error": "gone"})
    r = await client.get(SYNC_PATH, headers=auth("hs_alice"))
    assert (r.status_code, r.json()["errcode"]) == (403, "M_USER_DEACTIVATED")
    upstream.whoami_answer = (500, {"oops": True})
    r = await client.get(SYNC_PATH, headers=auth("hs_alice"))
    assert r.status_code == 502 and r.json()["errcode"] == "M_UNKNOWN"
    assert "HTTP 500" in r.json()["error"]
    # Neither answer was cached: the homeserver is asked again once it is well.
    upstream.whoami_answer = None
    await sync(client, "hs_alice")
    assert upstream.whoami_calls() == 3


async def test_unreachable_homeserver_is_503_not_500(config: Config) -> None:
    async with run_upstream() as gone:
        url = gone.url
    cfg = replace(config, auth="whoami", homeserver_url=url)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as c:
        r = await c.get(SYNC_PATH, headers=auth("hs_alice"))
        assert r.status_code == 503
        assert r.json() == {
            "errcode": "M_UNKNOWN",
            "error": "Cannot check the access token: the homeserver is unreachable",
        }
        r = await c.get("/_matrix/client/v3/joined_rooms", headers=auth("hs_alice"))
        assert r.status_code == 503 and r.json()["errcode"] == "M_UNKNOWN"


async def test_whoami_needs_a_homeserver_url(config: Config) -> None:
    with pytest.raises(ValueError, match="homeserver_url"):
        async with open_service(replace(config, auth="whoami")):
            pass
