from __future__ import annotations

import httpx

from trio_sync import Service
from trio_sync.demo import demo_community

from ..conftest import nio_accepts


async def test_complete_sync_over_http(service: Service, http: httpx.AsyncClient) -> None:
    messages, users = demo_community("example.org")
    await service.ingest(messages)
    token = await service.add_device(users[0], "PHONE")
    r = await http.get("/_matrix/client/v3/sync", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    body = r.json()
    nio_accepts(body)
    assert set(body["rooms"]["join"]) == {"!general:example.org", "!random:example.org"}
    assert set(body["rooms"]["invite"]) == {"!ops:example.org"}
