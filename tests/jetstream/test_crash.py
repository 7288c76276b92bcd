"""``trio-sync serve`` killed with SIGKILL while Dendrite publishes: nothing lost or doubled.

A real ``serve`` process consumes a stream of numbered to-device messages (nothing
deduplicates those on the way in) and room events; it is killed mid-stream, twice, and
started again. In the end every message was applied exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import orjson
import trio

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, open_engine

from ..e2e.conftest import ALICE, BOB, SERVER
from .conftest import NATS_URL, DendriteBus

MESSAGES = 1500
ROOM = f"!crash:{SERVER}"


class Serve:
    """``trio-sync serve --jetstream …`` in a subprocess."""

    def __init__(self, db_url: str, prefix: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "trio_sync.cli",
            "serve",
            "--database",
            db_url,
            "--listen",
            "127.0.0.1:0",
            "--jetstream",
            NATS_URL,
            "--jetstream-prefix",
            prefix,
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRIO_SYNC_")}
        self.env["TRIO_SYNC_BATCH_SIZE"] = "40"

    async def start(self) -> trio.Process:
        return await trio.lowlevel.open_process(
            self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


async def applied_so_far(db_url: str, prefix: str) -> tuple[int, list[int], int]:
    """(committed to-device sequence, every ``n`` in the inbox, room events stored)."""

    async def op(conn: Conn) -> tuple[int, list[int], int]:
        seq = await conn.fetchval(
            "SELECT position FROM ingest_offsets WHERE source = $1",
            f"jetstream:{prefix}OutputSendToDeviceEvent",
        )
        rows = await conn.fetch("SELECT content FROM device_inbox")
        events = await conn.fetchval("SELECT COUNT(*) FROM events")
        return int(seq or 0), [orjson.loads(r[0])["n"] for r in rows], int(events)

    async with open_engine(db_url) as engine:
        return await engine.read(op)


async def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
    bus: DendriteBus, db_url: str
) -> None:
    serve = Serve(db_url, bus.prefix)
    log = RoomLog(SERVER)
    room = [*log.create_room(ROOM, ALICE, "Crash"), log.member(ROOM, BOB, "join")]
    published = 0

    async def publish() -> None:
        nonlocal published
        for message in room:
            await bus.room_event(message)
        for n in range(1, MESSAGES + 1):
            await bus.send_to_device(ALICE, BOB, "PHONE", "org.example.n", {"n": n})
            if n % 10 == 0:
                await bus.room_event(log.message(ROOM, ALICE, f"message {n}"))
            published = n
            if n % 50 == 0:
                await trio.sleep(0.01)

    kills = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish)
        for _ in range(2):
            process = await serve.start()
            try:
                with trio.fail_after(60):
                    while True:
                        seq, _, _ = await applied_so_far(db_url, bus.prefix)
                        if seq > 0 and published < MESSAGES:
                            break
                        await trio.sleep(0.05)
                # Mid-stream: some applied, more still coming.
                process.send_signal(signal.SIGKILL)
                kills += 1
            finally:
                with trio.CancelScope(shield=True):
                    if process.poll() is None:
                        process.kill()
                    await process.wait()
    assert kills == 2 and published == MESSAGES

    process = await serve.start()
    try:
        with trio.fail_after(60):
            while True:
                seq, numbers, events = await applied_so_far(db_url, bus.prefix)
                if seq >= MESSAGES:
                    break
                await trio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(15):
            await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    counts = Counter(numbers)
    assert sorted(counts) == list(range(1, MESSAGES + 1))
    assert max(counts.values()) == 1
    assert events == len(room) + MESSAGES // 10
