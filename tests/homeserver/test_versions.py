"""GET /_matrix/client/versions beside a homeserver: its answer, with trio-sync's
unstable features merged in, fetched once per period."""

from __future__ import annotations

from dataclasses import replace

import httpx

from trio_sync import Config, open_service
from trio_sync.http.app import SPEC_VERSIONS, UNSTABLE

from .upstream import VERSIONS, run_upstream

PATH = "/_matrix/client/versions"


async def test_versions_are_the_homeserver_s_with_ours_merged(config: Config) -> None:
    async with run_upstream() as up:
        cfg = replace(config, homeserver_url=up.url)
        async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as c:
            for _ in range(3):
                body = (await c.get(PATH)).json()
                assert body["versions"] == VERSIONS["versions"]
                assert body["unstable_features"] == {
                    "org.example.homeserver_only": True,
                    **UNSTABLE,
                }
            assert sum(1 for _, p, _ in up.requests if p == PATH) == 1


async def test_without_the_homeserver_our_own_answer(config: Config) -> None:
    async with run_upstream() as gone:
        url = gone.url
    cfg = replace(config, homeserver_url=url)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as c:
        r = await c.get(PATH)
        assert r.status_code == 200
        assert r.json() == {"versions": SPEC_VERSIONS, "unstable_features": UNSTABLE}
