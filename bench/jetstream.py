#!/usr/bin/env python
"""trio-sync benchmark of the JetStream source: ingest throughput and wake-up latency.

    python bench/jetstream.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]
                              [--nats nats://127.0.0.1:4222]

(a) Ingest throughput: room events published on a Dendrite ``OutputRoomEvent`` stream (as
Dendrite's room server publishes them) while ``trio-sync serve --jetstream`` consumes it;
events per second from the first publish to the COMMIT of the last event (its sequence in
``ingest_offsets``). The publishing rate alone is printed beside it.
(b) Latency from publishing one room event to a long-polling member of the room having
read its ``/sync`` answer, while 1,000 other clients long-poll: p50 / p99.

Streams are created under a prefix of their own and deleted at the end. The server is
``trio-sync serve`` in a subprocess, the load generator this process (as ``bench.py``,
whose helpers it imports). Prints figures; exits 1 only when a run broke or failed its
own checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.js.errors
import orjson
import trio
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from streams import close, first_syncs, park, wake_figure

from bench import (
    SERVER_NAME,
    Database,
    Result,
    Server,
    _register,
    bench_main,
    drop_database,
    ms,
    new_database,
    say,
)
from trio_sync.roomlog import RoomLog

NATS_URL = os.environ.get("TRIO_SYNC_BENCH_NATS", "nats://127.0.0.1:4222")
IO_TIMEOUT = 30.0
PIPELINE = 1000  # publishes in flight at once


@dataclass(frozen=True)
class Sizes:
    events: int  # room events published for (a)
    rooms: int  # rooms they are spread over
    idle: int  # clients long-polling that nothing wakes, during (b)
    wake_n: int  # timed wake-ups


FULL = Sizes(events=50_000, rooms=100, idle=1000, wake_n=200)
QUICK = Sizes(events=2_000, rooms=10, idle=50, wake_n=20)

POSTER = f"@poster:{SERVER_NAME}"
TARGET = f"@target:{SERVER_NAME}"
WAKE_ROOM = f"!wake:{SERVER_NAME}"


def idle_users(sizes: Sizes) -> list[str]:
    return [f"@idle{i}:{SERVER_NAME}" for i in range(sizes.idle)]


class Dendrite:
    """Dendrite's side: its room event stream (and the durable of its own sync API)."""

    def __init__(self, nc: Any, prefix: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.prefix = prefix
        self.stream = prefix + "OutputRoomEvent"

    async def setup(self) -> None:
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[self.stream, self.stream + ".>"],
                retention=RetentionPolicy.INTEREST,
            )
        )
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.prefix + "SyncAPIRoomServerConsumerPull",
                ack_policy=AckPolicy.EXPLICIT,
            ),
        )

    async def teardown(self) -> None:
        for name in ("OutputRoomEvent", "OutputClientData", "OutputReceiptEvent",
                     "OutputTypingEvent", "OutputSendToDeviceEvent", "OutputKeyChangeEvent",
                     "OutputNotificationData", "OutputPresenceEvent"):  # fmt: skip
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self.js.delete_stream(self.prefix + name)

    async def publish(self, message: dict[str, Any]) -> int:
        kind = message["type"]
        headers = {
            "output_room_event_type": kind,
            "room_id": message[kind]["event"]["room_id"],
        }
        ack = await self.js.publish(self.stream, orjson.dumps(message), headers=headers)
        return int(ack.seq)

    async def publish_all(self, messages: Sequence[dict[str, Any]]) -> int:
        """Publish in order, ``PIPELINE`` acknowledgements awaited together; the last
        sequence."""
        last = 0
        for start in range(0, len(messages), PIPELINE):
            chunk = messages[start : start + PIPELINE]
            futures = [
                await self.js.publish_async(
                    self.stream,
                    orjson.dumps(m),
                    headers={
                        "output_room_event_type": m["type"],
                        "room_id": m[m["type"]]["event"]["room_id"],
                    },
                )
                for m in chunk
            ]
            acks = await asyncio.gather(*futures)
            last = max(last, *(int(a.seq) for a in acks))
        return last


class Committed:
    """Reads the committed sequence of a stream straight from the database."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.conn: Any = None

    async def __call__(self, stream: str) -> int:
        sql = "SELECT position FROM ingest_offsets WHERE source = $1"
        if self.db_url.startswith("sqlite:"):
            path = self.db_url.removeprefix("sqlite:///")
            if self.conn is None:
                self.conn = sqlite3.connect(path, check_same_thread=False)
            row = self.conn.execute(sql.replace("$1", "?"), ("jetstream:" + stream,)).fetchone()
            return int(row[0]) if row else 0
        if self.conn is None:
            self.conn = await asyncpg.connect(self.db_url)
        return int(await self.conn.fetchval(sql, "jetstream:" + stream) or 0)

    async def close(self) -> None:
        if self.conn is not None:
            result = self.conn.close()
            if asyncio.iscoroutine(result):
                await result


def room_messages(sizes: Sizes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(room creations, the timed room events spread over the rooms)."""
    log = RoomLog(SERVER_NAME)
    rooms = [f"!bench{i}:{SERVER_NAME}" for i in range(sizes.rooms)]
    setup: list[dict[str, Any]] = []
    for room in rooms:
        setup += log.create_room(room, POSTER, room)
    events = [log.message(rooms[i % len(rooms)], POSTER, f"event {i}") for i in range(sizes.events)]
    return setup, events


async def wait_committed(committed: Committed, stream: str, seq: int, limit: float) -> float:
    """Poll (every 5 ms) until ``seq`` is committed; the time it was seen."""
    deadline = time.perf_counter() + limit
    while await committed(stream) < seq:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"sequence {seq} not committed within {limit:.0f}s")
        await asyncio.sleep(0.005)
    return time.perf_counter()


async def fig_ingest(dendrite: Dendrite, committed: Committed, sizes: Sizes, res: Result) -> None:
    setup, events = room_messages(sizes)
    last = await dendrite.publish_all(setup)
    await wait_committed(committed, dendrite.stream, last, 60)
    t0 = time.perf_counter()
    last = await dendrite.publish_all(events)
    published = time.perf_counter()
    done = await wait_committed(committed, dendrite.stream, last, 600)
    rate = sizes.events / (done - t0)
    res.add(
        f"a. JetStream ingest, publish -> COMMIT ({sizes.events:,} events) events/s",
        f"{rate:,.0f}",
        ">= 5,000",
        rate >= 5000,
    )
    res.notes.append(
        f"ingest: publishing alone {sizes.events / (published - t0):,.0f} events/s; "
        f"last COMMIT {ms(done - published)} ms after the last publish"
    )


async def fig_wake(
    dendrite: Dendrite, port: int, committed: Committed, sizes: Sizes, res: Result
) -> None:
    log = RoomLog(SERVER_NAME)
    setup = [*log.create_room(WAKE_ROOM, POSTER, "Wake"), log.member(WAKE_ROOM, TARGET, "join")]
    last = await dendrite.publish_all(setup)
    await wait_committed(committed, dendrite.stream, last, 60)
    users = [*idle_users(sizes), TARGET]
    since = await first_syncs(port, users)
    idle = await park(port, idle_users(sizes), since)
    target = (await park(port, [TARGET], since))[0]

    async def send(message: dict[str, Any], i: int) -> None:
        await dendrite.publish(message)

    def answered(answer: dict[str, Any], i: int) -> bool:
        room = answer.get("rooms", {}).get("join", {}).get(WAKE_ROOM, {})
        bodies = [e["content"].get("body") for e in room.get("timeline", {}).get("events", [])]
        return bodies == [f"wake {i}"]

    try:
        await wake_figure(
            res,
            target,
            idle,
            sizes.wake_n,
            lambda i: log.message(WAKE_ROOM, POSTER, f"wake {i}"),
            send,
            answered,
            label="b. publish -> waiting member answered",
            limit_s=0.030,
            note="wake",
            wrong="answers without exactly the published event",
        )
    finally:
        close([*idle, target])


async def figures(db: Database, workdir: Path, sizes: Sizes, res: Result) -> None:
    nc = await nats.connect(NATS_URL)
    dendrite = Dendrite(nc, f"Bench{uuid.uuid4().hex[:8]}")
    server = Server(
        db.url, workdir, ["--jetstream", NATS_URL, "--jetstream-prefix", dendrite.prefix]
    )
    committed = Committed(db.url)
    try:
        await dendrite.setup()
        await asyncio.to_thread(server.start)
        say(f"figure a: JetStream ingest of {sizes.events:,} events")
        await fig_ingest(dendrite, committed, sizes, res)
        say(f"figure b: publish -> answer with {sizes.idle} other polls")
        await fig_wake(dendrite, server.port, committed, sizes, res)
    finally:
        await committed.close()
        await asyncio.to_thread(server.stop)
        await dendrite.teardown()
        await nc.close()


def run_backend(backend: str, sizes: Sizes, dsn: str) -> Result:
    res = Result(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"trio-sync-jetstream-{backend}-"))
    db: Database | None = None
    try:
        db = new_database(backend, workdir, "jetstream", dsn)
        trio.run(_register, db.url, [POSTER, TARGET, *idle_users(sizes)])
        asyncio.run(figures(db, workdir, sizes, res))
    except Exception as exc:
        res.broke(exc)
        log = workdir / "server.log"
        if log.exists():
            res.notes.append("server log tail:\n" + "\n".join(log.read_text().splitlines()[-20:]))
    finally:
        if db is not None:
            drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    return bench_main("trio-sync JetStream bench", description, run_backend, (FULL, QUICK), argv)


if __name__ == "__main__":
    sys.exit(main())
