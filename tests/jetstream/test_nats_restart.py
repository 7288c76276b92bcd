"""A NATS server restarted while Dendrite publishes: trio-sync reconnects and resumes.

This test runs a NATS server of its own (``nats-server -js`` on a free port, with its own
store directory), so that restarting it disturbs nobody else. Numbered to-device messages
are published throughout; the server is stopped and started again half way; /sync keeps
answering meanwhile, and in the end every stored message was applied exactly once. The
typing stream, kept in memory, is lost by the restart and created anew (as Dendrite does
on reconnecting); trio-sync consumes the new one from its start.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import nats
import orjson
import pytest
import trio

from trio_sync import Config, Service, open_service
from trio_sync.bridge import open_bridge, run_asyncio
from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn

from ..e2e.conftest import ALICE, BOB, SERVER, sync
from .conftest import DendriteBus, committed, new_prefix, wait_committed

MESSAGES = 400
ROOM = f"!restart:{SERVER}"
TO_DEVICE = "OutputSendToDeviceEvent"


class PrivateNats:
    """``nats-server -js`` on a free port of 127.0.0.1, restartable on the same store."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server is not installed (Debian package nats-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.command = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)]
        self.process: trio.Process | None = None

    async def start(self) -> None:
        self.process = await trio.lowlevel.open_process(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.port)
                    await stream.aclose()
                    return
                except OSError:
                    await trio.sleep(0.05)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with trio.move_on_after(10):
                await self.process.wait()
            if self.process.poll() is None:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[PrivateNats]:
    server = PrivateNats(tmp_path / "jetstream")
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()


@asynccontextmanager
async def dendrite_on(
    private_nats: PrivateNats, config: Config
) -> AsyncIterator[tuple[DendriteBus, Config]]:
    """Dendrite's streams on the private server (a fresh prefix), and ``config`` pointed at
    them; the client reconnects for ever, as Dendrite's does."""
    async with open_bridge():
        nc = await run_asyncio(
            partial(
                nats.connect, private_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
            )
        )
        try:
            bus = DendriteBus(nc, new_prefix())
            await bus.setup()
            yield (
                bus,
                dataclasses.replace(
                    config, jetstream=private_nats.url, jetstream_prefix=bus.prefix
                ),
            )
        finally:
            with trio.CancelScope(shield=True):
                await run_asyncio(nc.close)


async def inbox_numbers(service: Service) -> list[int]:
    async def op(conn: Conn) -> list[int]:
        rows = await conn.fetch("SELECT content FROM device_inbox")
        return [orjson.loads(r[0])["n"] for r in rows]

    return await service.engine.read(op)


async def stream_numbers(bus: DendriteBus, first: int, last: int) -> list[int]:
    """The ``n`` of every to-device message the stream holds."""

    async def go() -> list[int]:
        found = []
        for seq in range(first, last + 1):
            try:
                msg = await bus.js.get_msg(bus.stream(TO_DEVICE), seq)
            except nats.js.errors.NotFoundError:
                continue
            assert msg.data is not None
            found.append(orjson.loads(msg.data)["content"]["n"])
        return found

    return await run_asyncio(go)


async def test_nats_restarted_under_load(private_nats: PrivateNats, config: Config) -> None:
    async with (
        dendrite_on(private_nats, config) as (bus, cfg),
        open_service(cfg) as service,
        httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as http,
    ):
        token = await service.add_device(BOB, "PHONE")
        log = RoomLog(SERVER)
        for message in [
            *log.create_room(ROOM, ALICE, "Restart"),
            log.member(ROOM, BOB, "join"),
        ]:
            seq = await bus.room_event(message)
        await wait_committed(service, bus, "OutputRoomEvent", seq)
        since = (await sync(http, token))["next_batch"]
        await bus.typing(BOB, ROOM, True, 30_000)
        await wait_committed(service, bus, "OutputTypingEvent", 1)
        acked: dict[int, int] = {}  # stream sequence → n, for publishes NATS acknowledged
        attempts: Counter[int] = Counter()

        async def publish() -> None:
            for n in range(1, MESSAGES + 1):
                with trio.fail_after(30):
                    while True:
                        attempts[n] += 1
                        try:
                            seq = await bus.send_to_device(
                                ALICE, BOB, "PHONE", "org.example.n", {"n": n}
                            )
                            acked[seq] = n
                            break
                        except (nats.errors.Error, TimeoutError):
                            await trio.sleep(0.1)
                if n % 20 == 0:
                    await trio.sleep(0.01)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            with trio.fail_after(30):
                while len(acked) < MESSAGES // 3:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            applied_at_stop = await committed(service, bus.stream(TO_DEVICE))
            await private_nats.stop()
            acked_at_stop = max(acked)
            # NATS is down: /sync still answers from what is stored.
            body = await sync(http, token, timeout=0)
            assert body["next_batch"]
            await trio.sleep(1)
            await private_nats.start()
        assert len(acked) == MESSAGES

        # Dendrite recreates its streams on reconnecting: the memory ones are new.
        await bus.setup()
        typing_seq = await bus.typing(ALICE, ROOM, True, 30_000)
        assert typing_seq == 1

        info = await run_asyncio(bus.js.stream_info, bus.stream(TO_DEVICE))
        await wait_committed(service, bus, TO_DEVICE, int(info.state.last_seq))
        first = int(info.state.first_seq)
        held = await stream_numbers(bus, first, int(info.state.last_seq))
        numbers = Counter(await inbox_numbers(service))
        # Every message the stream holds was applied.
        assert not Counter(held) - numbers
        # A publish NATS acknowledged and trio-sync never applied can only be one
        # NATS itself lost in the restart: acknowledged shortly before it stopped,
        # after everything trio-sync had applied by then (nats-server does not
        # write every acknowledged message to disk before it answers).
        unapplied = [seq for seq, n in acked.items() if numbers[n] == 0]
        assert all(applied_at_stop < seq <= acked_at_stop for seq in unapplied)
        # Nothing was applied twice: no more often than it was published (a publish
        # whose acknowledgement was lost in the restart is retried, and may be stored
        # twice).
        assert all(count <= attempts[n] for n, count in numbers.items())
        # The new typing stream's first message was applied, not taken for one
        # already seen (its sequence, 1, was committed on the old stream).
        with trio.fail_after(10):
            while True:
                body = await sync(http, token, since=since, timeout=1000)
                since = body["next_batch"]
                room = body.get("rooms", {}).get("join", {}).get(ROOM, {})
                events = room.get("ephemeral", {}).get("events", [])
                typing = [e for e in events if e["type"] == "m.typing"]
                if typing and ALICE in typing[0]["content"]["user_ids"]:
                    break


async def _presence(http: httpx.AsyncClient, token: str, user_id: str) -> dict[str, object]:
    response = await http.get(
        f"/_matrix/client/v3/presence/{user_id}/status",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_a_memory_stream_recreated_while_stopped_is_read_from_its_start(
    private_nats: PrivateNats, config: Config
) -> None:
    # Presence lives in a memory stream. trio-sync commits sequence 3 of it and stops;
    # NATS restarts (the stream is lost), Dendrite creates it anew and publishes 5
    # presence updates before trio-sync starts again. Sequences 1-3 of the new stream
    # are new messages, not the ones committed: all 5 must be applied.
    users = [f"@p{i}:{SERVER}" for i in range(1, 6)]
    async with dendrite_on(private_nats, config) as (bus, cfg):
        log = RoomLog(SERVER)
        room = [*log.create_room(ROOM, ALICE, "Presence"), log.member(ROOM, BOB, "join")]
        room += [log.member(ROOM, user, "join") for user in users]
        async with open_service(cfg) as service:
            token = await service.add_device(BOB, "PHONE")
            for message in room:
                seq = await bus.room_event(message)
            await wait_committed(service, bus, "OutputRoomEvent", seq)
            for i in range(3):
                seq = await bus.presence(ALICE, "online", 1_000 + i, f"before {i}")
            assert seq == 3
            await wait_committed(service, bus, "OutputPresenceEvent", 3)

        await private_nats.stop()
        await private_nats.start()
        await bus.setup()  # as Dendrite does on reconnecting: the memory streams are new
        for i, user in enumerate(users, start=1):
            assert await bus.presence(user, "online", 2_000 + i, f"after {i}") == i

        async with (
            open_service(cfg) as service,
            httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as http,
        ):
            await wait_committed(service, bus, "OutputPresenceEvent", len(users))
            for i, user in enumerate(users, start=1):
                body = await _presence(http, token, user)
                assert (body["presence"], body.get("status_msg")) == ("online", f"after {i}")
            assert (await _presence(http, token, ALICE))["status_msg"] == "before 2"
