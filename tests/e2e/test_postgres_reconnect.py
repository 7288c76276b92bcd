"""PostgreSQL connections cut under load: every read that failed because its connection
died is retried once on a fresh connection, so clients see no error; the log says once per
lost connection what happened, with no traceback per request. The cuts are paced so that
no request lives through two of them (the promise is one retry), however slow the
machine, and at least one lands while requests are in flight."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio
import trio_asyncio

from trio_sync import Service

from ..conftest import PG_DSN, terminate_backends
from .conftest import ALICE, BOB, auth
from .rooms_support import ROOM, make_rooms

if PG_DSN:

    @pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
    async def test_reads_survive_postgres_dropping_every_connection(
        db_url: str, service: Service, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        dbname = db_url.rpartition("/")[2]
        rooms = await make_rooms(service, http)
        await rooms.room()
        await rooms.join(ROOM, ALICE)
        await rooms.say(ROOM, BOB, *(f"m{i}" for i in range(20)))
        tokens = [rooms.tokens[ALICE], rooms.tokens[BOB]]
        paths = [
            "/_matrix/client/v3/sync",
            f"/_matrix/client/v3/rooms/{ROOM}/messages?dir=b&limit=5",
            f"/_matrix/client/v3/rooms/{ROOM}/members",
            "/_matrix/client/v3/joined_rooms",
        ]
        statuses: list[int] = []
        killed = 0
        # Each cut is a generation; a request notes the one it started in. The promise is
        # one retry per request, so a request must never live through two cuts: the next
        # cut waits until every request that started before the last one has ended. On a
        # loaded machine that wait grows; the cuts still land on requests in flight.
        generation = 0
        in_flight: dict[int, int] = {}
        ids = iter(range(1 << 30))
        ended = [trio.Event()]
        cut_in_flight = 0

        async def client(n: int) -> None:
            for i in range(40):
                rid = next(ids)
                in_flight[rid] = generation
                try:
                    r = await http.get(paths[(n + i) % len(paths)], headers=auth(tokens[n % 2]))
                finally:
                    del in_flight[rid]
                    ended[0].set()
                statuses.append(r.status_code)
                await trio.sleep(0.02)

        async def settled() -> None:
            with trio.fail_after(30):
                while any(g < generation for g in in_flight.values()):
                    ended[0] = trio.Event()
                    await ended[0].wait()

        caplog.set_level(logging.INFO)
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(client, n)
            for _ in range(4):
                await trio.sleep(0.3)
                await settled()
                cut_in_flight += len(in_flight)
                killed += await trio_asyncio.aio_as_trio(terminate_backends)(dbname)
                generation += 1
            # Idle connections killed between requests, too.
        await trio.sleep(0.1)
        killed += await trio_asyncio.aio_as_trio(terminate_backends)(dbname)
        for path in paths:
            r = await http.get(path, headers=auth(tokens[0]))
            statuses.append(r.status_code)

        assert killed >= 5
        assert cut_in_flight > 0, "no cut landed while requests were in flight"
        assert len(statuses) == 8 * 40 + len(paths)
        assert set(statuses) == {200}, sorted(set(statuses))
        ours = [r for r in caplog.records if r.name.startswith("trio_sync")]
        assert not [r for r in ours if r.exc_info], "a traceback was logged"
        # The engine's own lines (the bridge may add one for an exception asyncpg left
        # unretrieved when a cut came while it was connecting).
        lost = [
            r
            for r in ours
            if r.name == "trio_sync.storage.postgres"
            and "connection" in r.getMessage().lower()
            and "lost" in r.getMessage().lower()
        ]
        assert lost, "the lost connections were not logged"
        # At most one line per connection cut (5 connections, each killed at most 5 times).
        assert len(lost) <= killed
