"""``GET /sync`` is answered straight from ASGI; the rest of the app still routes it."""

from __future__ import annotations

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, SERVER, sync

ROOM = f"!endpoint:{SERVER}"


async def test_head_sync_is_answered_by_the_app(service: Service, http: httpx.AsyncClient) -> None:
    token = await service.add_device(ALICE, "A")
    r = await http.head("/_matrix/client/v3/sync", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert r.content == b""


async def test_repeated_query_parameters_use_the_first(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = RoomLog(SERVER)
    await service.ingest(log.create_room(ROOM, ALICE))
    token = await service.add_device(ALICE, "A")
    body = await sync(http, token, filter='{"room":{"timeline":{"limit":1}}}')
    r = await http.get(
        "/_matrix/client/v3/sync",
        params=[("since", body["next_batch"]), ("since", "garbage"), ("timeout", "0")],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    assert r.json()["next_batch"] == body["next_batch"]


async def test_content_length_matches_the_body(service: Service, http: httpx.AsyncClient) -> None:
    log = RoomLog(SERVER)
    await service.ingest(log.create_room(ROOM, ALICE, "Name with ünïcödé"))
    token = await service.add_device(ALICE, "A")
    r = await http.get("/_matrix/client/v3/sync", headers={"Authorization": f"Bearer {token}"})
    assert int(r.headers["content-length"]) == len(r.content)
    assert r.headers["content-type"] == "application/json"
    assert "ünïcödé" in r.text
