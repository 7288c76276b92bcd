"""With a JetStream source, client writes belong to the homeserver: trio-sync's own write
endpoints answer 404 M_UNRECOGNIZED (unless local_writes), reads keep working, and
set_presence on /sync writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from trio_sync import Config, Service, open_service
from trio_sync.http.presence import load_presence

from .conftest import ALICE, sync
from .support import ROOM, call, room_with

WRITES = [
    ("PUT", f"/user/{ALICE}/account_data/m.test", {"a": 1}),
    ("PUT", f"/user/{ALICE}/rooms/{ROOM}/account_data/m.test", {"a": 1}),
    ("PUT", f"/user/{ALICE}/rooms/{ROOM}/tags/u.work", {}),
    ("DELETE", f"/user/{ALICE}/rooms/{ROOM}/tags/u.work", None),
    ("PUT", f"/rooms/{ROOM}/typing/{ALICE}", {"typing": True, "timeout": 1000}),
    ("POST", f"/rooms/{ROOM}/receipt/m.read/$event", {}),
    ("POST", f"/rooms/{ROOM}/read_markers", {"m.fully_read": "$event"}),
    ("PUT", f"/presence/{ALICE}/status", {"presence": "online"}),
    ("PUT", "/sendToDevice/m.test/txn1", {"messages": {}}),
]


def homeserver_writes(config: Config, **changes: object) -> Config:
    # A NATS URL marks the JetStream mode; a prefix of our own keeps any consumer apart.
    extra = {"jetstream_prefix": "TrioSyncAuthTest"} if hasattr(config, "jetstream_prefix") else {}
    return replace(config, jetstream="nats://127.0.0.1:4222", **extra, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def js_service(config: Config) -> AsyncIterator[Service]:
    async with open_service(homeserver_writes(config)) as svc:
        yield svc


async def test_writes_answer_unrecognized(js_service: Service) -> None:
    token = await js_service.add_device(ALICE, "PHONE")
    await room_with(js_service)
    async with httpx.AsyncClient(base_url=js_service.addresses[0]) as http:
        for method, path, body in WRITES:
            out = await call(http, method, path, token, body, status=404)
            assert out["errcode"] == "M_UNRECOGNIZED", (method, path)
        # Reads and filters are still served.
        first = await sync(http, token, set_presence="online")
        assert ROOM in first["rooms"]["join"]
        out = await call(http, "POST", f"/user/{ALICE}/filter", token, {"room": {}})
        assert "filter_id" in out
        await call(http, "GET", f"/user/{ALICE}/account_data/m.test", token, status=404)
        # set_presence on /sync wrote nothing.
        assert await js_service.engine.read_one(load_presence, ALICE) is None


async def test_local_writes_can_be_enabled(config: Config) -> None:
    async with open_service(homeserver_writes(config, local_writes=True)) as svc:
        token = await svc.add_device(ALICE, "PHONE")
        await room_with(svc)
        async with httpx.AsyncClient(base_url=svc.addresses[0]) as http:
            await call(http, "PUT", f"/user/{ALICE}/account_data/m.test", token, {"a": 1})
            await call(http, "PUT", f"/presence/{ALICE}/status", token, {"presence": "online"})
            assert await svc.engine.read_one(load_presence, ALICE) is not None
