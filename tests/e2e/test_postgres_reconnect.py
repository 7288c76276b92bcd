"""PostgreSQL connections cut under load: every read that failed because its connection
died is retried once on a fresh connection, so clients see no error; the log says once per
lost connection what happened, with no traceback per request."""

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

        async def client(n: int) -> None:
            for i in range(40):
                r = await http.get(paths[(n + i) % len(paths)], headers=auth(tokens[n % 2]))
                statuses.append(r.status_code)
                await trio.sleep(0.02)

        caplog.set_level(logging.INFO)
        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(client, n)
            for _ in range(4):
                await trio.sleep(0.5)
                killed += await trio_asyncio.aio_as_trio(terminate_backends)(dbname)
            # Idle connections killed between requests, too.
        await trio.sleep(0.1)
        killed += await trio_asyncio.aio_as_trio(terminate_backends)(dbname)
        for path in paths:
            r = await http.get(path, headers=auth(tokens[0]))
            statuses.append(r.status_code)

        assert killed >= 5
        assert len(statuses) == 8 * 40 + len(paths)
        assert set(statuses) == {200}, sorted(set(statuses))
        ours = [r for r in caplog.records if r.name.startswith("trio_sync")]
        assert not [r for r in ours if r.exc_info], "a traceback was logged"
        lost = [
            r
            for r in ours
            if "connection" in r.getMessage().lower() and "lost" in r.getMessage().lower()
        ]
        assert lost, "the lost connections were not logged"
        # At most one line per connection cut (5 connections, each killed at most 5 times).
        assert len(lost) <= killed
