"""``sendToDevice`` with ``*`` reaches the devices only the homeserver knows (real
Dendrite tables in PostgreSQL), as well as trio-sync's own, once each."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from trio_sync import Config, open_service

from ..dendrite import DendriteDatabase
from ..e2e.conftest import auth, sync

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
#: Same localpart, another server: not Alice.
ALICE_ELSEWHERE = "@alice:other.example"


def _to_device(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body.get("to_device", {}).get("events", [])
    return events


async def test_star_reaches_every_device_dendrite_and_trio_sync_know(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice_phone")
    await dendrite_db.add_device(ALICE, "LAPTOP", "syt_alice_laptop")
    await dendrite_db.add_device(ALICE_ELSEWHERE, "TABLET", "syt_other_alice")
    await dendrite_db.add_device(BOB, "DESK", "syt_bob")
    cfg = replace(config, homeserver_database=dendrite_db.url)  # auth stays local
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        # Tokens of trio-sync's own for the devices (auth = local); one more device that
        # Dendrite does not know.
        tokens = {d: await svc.add_device(ALICE, d) for d in ("PHONE", "LAPTOP", "WATCH")}
        other = await svc.add_device(ALICE_ELSEWHERE, "TABLET")
        bob = await svc.add_device(BOB, "DESK")
        since = {d: (await sync(http, t))["next_batch"] for d, t in tokens.items()}
        other_since = (await sync(http, other))["next_batch"]

        path = "/_matrix/client/v3/sendToDevice/org.example.ping/txn1"
        body = {"messages": {ALICE: {"*": {"n": 1}}}}
        for _ in range(2):  # a retried request delivers nothing again
            r = await http.put(path, json=body, headers=auth(bob))
            assert (r.status_code, r.json()) == (200, {})

        for device, token in tokens.items():
            got = _to_device(await sync(http, token, since=since[device], timeout=0))
            assert [(e["sender"], e["type"], e["content"]) for e in got] == [
                (BOB, "org.example.ping", {"n": 1})
            ], device
        assert _to_device(await sync(http, other, since=other_since, timeout=0)) == []


async def test_star_reaches_a_device_only_dendrite_knows(
    config: Config, dendrite_db: DendriteDatabase
) -> None:
    await dendrite_db.add_device(ALICE, "PHONE", "syt_alice_phone")
    await dendrite_db.add_device(BOB, "DESK", "syt_bob")
    cfg = replace(config, auth="homeserver-database", homeserver_database=dendrite_db.url)
    async with open_service(cfg) as svc, httpx.AsyncClient(base_url=svc.addresses[0]) as http:
        since = (await sync(http, "syt_alice_phone"))["next_batch"]
        r = await http.put(
            "/_matrix/client/v3/sendToDevice/org.example.ping/txn1",
            json={"messages": {ALICE: {"*": {"n": 2}}}},
            headers=auth("syt_bob"),
        )
        assert r.status_code == 200, r.text
        got = _to_device(await sync(http, "syt_alice_phone", since=since, timeout=0))
        assert [e["content"] for e in got] == [{"n": 2}]
