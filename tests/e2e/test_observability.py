"""GET /metrics, GET /health and the request metrics, against a real running service."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trio_sync import Config, Service, open_service
from trio_sync.roomlog import RoomLog, dumps_lines

from ..conftest import PG_DSN, _pg_admin
from .conftest import SYNC_PATH, auth, sync

SERVER = "example.org"
ROOM, ALICE, BOB = f"!metrics:{SERVER}", f"@alice:{SERVER}", f"@bob:{SERVER}"
INGEST_AUTH = {"Authorization": "Bearer test-secret"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient, path: str = "/metrics") -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser."""
    r = await http.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def test_metrics_move_with_real_traffic(service: Service, http: httpx.AsyncClient) -> None:
    token = await service.add_device(BOB, "PHONE")
    log = RoomLog(SERVER)
    await service.ingest([*log.create_room(ROOM, ALICE), log.member(ROOM, BOB, "join")])
    before = await scrape(http)

    first = await sync(http, token)
    pushed = await http.post(
        "/_trio_sync/v1/ingest",
        content=dumps_lines([log.message(ROOM, ALICE, "hi")]) + b"not json\n",
        headers=INGEST_AUTH,
    )
    assert pushed.status_code == 200
    woken = await sync(http, token, since=first["next_batch"], timeout=10000)
    assert woken["rooms"]["join"][ROOM]["timeline"]["events"]
    empty = await sync(http, token, since=woken["next_batch"], timeout=50)
    assert not empty.get("rooms", {}).get("join")
    filters = await http.get(f"/_matrix/client/v3/user/{BOB}/filter/0", headers=auth(token))
    assert filters.status_code == 404
    assert (await http.get("/no/such/path")).status_code == 404

    async with trio.open_nursery() as nursery:
        # A long-poll parked while /metrics is scraped.
        async def park() -> None:
            await sync(http, token, since=empty["next_batch"], timeout=20000)

        nursery.start_soon(park)
        for _ in range(200):
            during = await scrape(http)
            if value(during, "trio_sync_parked_long_polls") >= 1:
                break
            await trio.sleep(0.01)
        assert value(during, "trio_sync_parked_long_polls") >= 1
        assert value(during, "trio_sync_notifier_streams") >= 1
        await service.ingest([log.message(ROOM, ALICE, "wake up")])

    after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    sync_path = "/_matrix/client/v3/sync"
    assert moved("trio_sync_http_requests_total", endpoint=sync_path, status="200") == 4
    assert (
        moved("trio_sync_http_response_time_seconds_count", endpoint=sync_path, status="200") == 4
    )
    # Quart routes are counted by route template, not by raw path.
    filter_route = "/_matrix/client/v3/user/<user_id>/filter/<filter_id>"
    assert moved("trio_sync_http_requests_total", endpoint=filter_route, status="404") == 1
    assert moved("trio_sync_http_requests_total", endpoint="unmatched", status="404") == 1
    assert moved("trio_sync_sync_responses_total", kind="complete") == 1
    assert moved("trio_sync_sync_responses_total", kind="incremental") == 2
    assert moved("trio_sync_sync_responses_total", kind="empty") == 1
    assert moved("trio_sync_notifier_wakeups_total") >= 1  # the parked poll
    assert moved("trio_sync_ingest_messages_total", source="http", outcome="applied") == 1
    assert moved("trio_sync_ingest_messages_total", source="http", outcome="rejected") == 1
    assert moved("trio_sync_ingest_messages_total", source="in-process", outcome="applied") == 1
    assert moved("trio_sync_ingest_batch_seconds_count") >= 2
    engine = service.engine.name
    assert moved("trio_sync_db_operation_seconds_count", engine=engine, kind="read") >= 4
    assert moved("trio_sync_db_operation_seconds_count", engine=engine, kind="write") >= 2
    assert value(after, "trio_sync_parked_long_polls") == 0
    assert value(after, "process_resident_memory_bytes") > 0


async def test_gc_pauses_are_measured(service: Service, http: httpx.AsyncClient) -> None:
    before = value(await scrape(http), "trio_sync_gc_pause_seconds_count", generation="2")
    gc.collect()
    after = value(await scrape(http), "trio_sync_gc_pause_seconds_count", generation="2")
    # At least the collection above; the interpreter may run one of its own meanwhile.
    assert after >= before + 1


async def test_followed_file_reports_its_lag(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "room.log"
    log = RoomLog(SERVER)
    path.write_bytes(dumps_lines(log.create_room(ROOM, ALICE)) + b'{"partial": ')
    async with (
        open_service(replace(config, log=str(path), follow_poll_interval=0.01)) as service,
        httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as http,
    ):
        label = str(path)
        for _ in range(500):
            lag = value(await scrape(http), "trio_sync_ingest_lag", source=label)
            if service.notifier.current.pdu > 0 and lag == len(b'{"partial": '):
                break
            await trio.sleep(0.01)
        # The partial last line is available but not yet committed.
        assert lag == len(b'{"partial": ')


async def test_health_is_ok_when_ready_and_503_when_stopping(
    service: Service, http: httpx.AsyncClient
) -> None:
    r = await http.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    # Never behind a client token, and never a client's 401.
    assert (await http.get("/metrics")).status_code == 200
    service.notifier.close()
    r = await http.get("/health")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reason": "shutting down"}


async def test_separate_metrics_listener(config: Config) -> None:
    config = replace(config, metrics_listen="127.0.0.1:0")
    async with open_service(config) as service:
        assert service.metrics_addresses
        async with httpx.AsyncClient(base_url=service.metrics_addresses[0], timeout=30) as ops:
            samples = await scrape(ops)
            assert "trio_sync_parked_long_polls" in {name for name, _ in samples}
            assert (await ops.get("/health")).json()["status"] == "ok"
            assert (await ops.get(SYNC_PATH)).status_code == 404  # only the two paths
        async with httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as main:
            assert (await main.get("/metrics")).status_code == 404  # moved away
            assert (await main.get("/health")).status_code == 200  # still for balancers


if PG_DSN:

    def _admin(*statements: str) -> None:
        asyncio.run(_pg_admin(*statements))

    @pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
    async def test_health_is_503_while_the_database_is_unreachable(
        db_url: str, service: Service, http: httpx.AsyncClient
    ) -> None:
        assert (await http.get("/health")).status_code == 200
        name = db_url.rpartition("/")[2]
        await trio.to_thread.run_sync(
            _admin,
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )
        try:
            r = await http.get("/health")
            assert r.status_code == 503
            assert r.json()["reason"].startswith("database unreachable: ")
        finally:
            await trio.to_thread.run_sync(_admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        for _ in range(100):  # the engine reconnects
            r = await http.get("/health")
            if r.status_code == 200:
                break
            await trio.sleep(0.05)
        assert r.status_code == 200
