"""A NATS JetStream server publishing as Dendrite does, and trio-sync consuming from it.

The NATS server is the real one at ``TRIO_SYNC_TEST_NATS`` (default
``nats://127.0.0.1:4222``); the tests fail when it cannot be reached. Every test uses a
stream prefix of its own, so parallel runs never meet, and deletes its streams at the end.
:class:`DendriteBus` creates the streams with Dendrite's names and settings, binds the
durable pull consumers Dendrite's sync API binds (``<prefix>SyncAPI…ConsumerPull``) and
publishes each message with the headers and body Dendrite's producers write.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import orjson
import pytest
import trio
from nats.aio.client import Client as NATS
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from trio_sync import Config, Service, open_service
from trio_sync.bridge import open_bridge, run_asyncio
from trio_sync.storage import Conn

NATS_URL = os.environ.get("TRIO_SYNC_TEST_NATS", "nats://127.0.0.1:4222")

#: Dendrite's streams (setup/jetstream/streams.go): name → (memory storage, max age s).
DENDRITE_STREAMS = {
    "OutputRoomEvent": (False, 0.0),
    "OutputClientData": (False, 0.0),
    "OutputReceiptEvent": (False, 0.0),
    "OutputTypingEvent": (True, 60.0),
    "OutputSendToDeviceEvent": (False, 0.0),
    "OutputKeyChangeEvent": (False, 0.0),
    "OutputNotificationData": (False, 0.0),
    "OutputPresenceEvent": (True, 300.0),
}

#: The durables Dendrite's sync API binds, per stream (syncapi/consumers/*.go).
DENDRITE_DURABLES = {
    "OutputRoomEvent": "SyncAPIRoomServerConsumer",
    "OutputClientData": "SyncAPIAccountDataConsumer",
    "OutputReceiptEvent": "SyncAPIReceiptConsumer",
    "OutputTypingEvent": "SyncAPITypingConsumer",
    "OutputSendToDeviceEvent": "SyncAPISendToDeviceConsumer",
    "OutputKeyChangeEvent": "SyncAPIKeyChangeConsumer",
    "OutputNotificationData": "SyncAPINotificationDataConsumer",
    "OutputPresenceEvent": "SyncAPIPresenceConsumer",
}


def new_prefix() -> str:
    return f"T{uuid.uuid4().hex[:10]}"


class DendriteBus:
    """Dendrite's side of JetStream, for one stream prefix."""

    def __init__(self, nc: NATS, prefix: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.prefix = prefix

    def stream(self, name: str) -> str:
        return self.prefix + name

    def dendrite_durable(self, name: str) -> str:
        return self.prefix + DENDRITE_DURABLES[name] + "Pull"

    async def setup(self) -> None:
        """Streams as Dendrite creates them, and Dendrite's own durables on them."""

        async def go() -> None:
            for name, (memory, max_age) in DENDRITE_STREAMS.items():
                stream = self.stream(name)
                await self.js.add_stream(
                    StreamConfig(
                        name=stream,
                        subjects=[stream, stream + ".>"],
                        retention=RetentionPolicy.INTEREST,
                        storage=StorageType.MEMORY if memory else StorageType.FILE,
                        max_age=max_age or None,
                    )
                )
                await self.js.add_consumer(
                    stream,
                    ConsumerConfig(
                        durable_name=self.dendrite_durable(name), ack_policy=AckPolicy.EXPLICIT
                    ),
                )

        await run_asyncio(go)

    async def teardown(self) -> None:
        async def go() -> None:
            for name in DENDRITE_STREAMS:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self.js.delete_stream(self.stream(name))

        await run_asyncio(go)

    async def publish(self, name: str, headers: dict[str, str], data: bytes = b"") -> int:
        """Publish on the bare stream name, as Dendrite's producers do; the sequence."""

        async def go() -> int:
            ack = await self.js.publish(self.stream(name), data, headers=headers)
            return int(ack.seq)

        return await run_asyncio(go)

    # The producers, one per stream.

    async def room_event(self, output_event: dict[str, Any]) -> int:
        """roomserver/producers/roomevent.go: an ``OutputEvent``."""
        kind = output_event["type"]
        inner = output_event[kind]
        room = (inner.get("event") or {}).get("room_id") or inner.get("RoomID") or ""
        headers = {"output_room_event_type": kind, "room_id": room}
        return await self.publish("OutputRoomEvent", headers, orjson.dumps(output_event))

    async def client_data(self, user_id: str, room_id: str, kind: str, **extra: Any) -> int:
        """userapi/producers/syncapi.go ``SendAccountData``: no content in the message."""
        body = {"room_id": room_id, "type": kind, **extra}
        return await self.publish("OutputClientData", {"user_id": user_id}, orjson.dumps(body))

    async def receipt(self, user_id: str, room_id: str, event_id: str, kind: str, ts: int) -> int:
        headers = {
            "user_id": user_id,
            "room_id": room_id,
            "event_id": event_id,
            "type": kind,
            "timestamp": str(ts),
        }
        return await self.publish("OutputReceiptEvent", headers)

    async def typing(self, user_id: str, room_id: str, typing: bool, timeout_ms: int) -> int:
        headers = {
            "user_id": user_id,
            "room_id": room_id,
            "typing": "true" if typing else "false",
            "timeout_ms": str(timeout_ms),
        }
        return await self.publish("OutputTypingEvent", headers)

    async def send_to_device(
        self, sender: str, user_id: str, device_id: str, kind: str, content: dict[str, Any]
    ) -> int:
        body = {
            "user_id": user_id,
            "device_id": device_id,
            "sender": sender,
            "type": kind,
            "content": content,
        }
        headers = {"sender": sender, "user_id": user_id}
        return await self.publish("OutputSendToDeviceEvent", headers, orjson.dumps(body))

    async def device_keys(
        self, user_id: str, device_id: str, keys: dict[str, Any], change_id: int
    ) -> int:
        """userapi/producers/keychange.go: a ``DeviceMessage`` with Go field names."""
        body = {
            "DeviceKeys": {
                "UserID": user_id,
                "DeviceID": device_id,
                "DisplayName": "",
                "KeyJSON": base64.b64encode(orjson.dumps(keys)).decode(),
            },
            "StreamID": 0,
            "DeviceChangeID": change_id,
        }
        return await self.publish("OutputKeyChangeEvent", {"user_id": user_id}, orjson.dumps(body))

    async def cross_signing(self, user_id: str, master_key: dict[str, Any]) -> int:
        body = {
            "Type": 1,
            "CrossSigningKeyUpdate": {
                "signing_keys": {"master_key": master_key, "user_id": user_id}
            },
            "StreamID": 0,
            "DeviceChangeID": 0,
        }
        return await self.publish("OutputKeyChangeEvent", {"user_id": user_id}, orjson.dumps(body))

    async def notification_data(
        self, user_id: str, room_id: str, notifications: int, highlights: int
    ) -> int:
        body = {
            "room_id": room_id,
            "unread_highlight_count": highlights,
            "unread_notification_count": notifications,
        }
        return await self.publish(
            "OutputNotificationData", {"user_id": user_id}, orjson.dumps(body)
        )

    async def presence(
        self, user_id: str, presence: str, last_active_ts: int, status_msg: str | None = None
    ) -> int:
        headers = {"user_id": user_id, "presence": presence, "last_active_ts": str(last_active_ts)}
        if status_msg is not None:
            headers["status_msg"] = status_msg
        return await self.publish("OutputPresenceEvent", headers)

    async def durable_state(self, stream_name: str, durable: str) -> tuple[int, int, int]:
        """(delivered consumer sequence, ack floor stream sequence, pending) of a durable."""

        async def go() -> tuple[int, int, int]:
            info = await self.js.consumer_info(self.stream(stream_name), durable)
            return (
                int(info.delivered.consumer_seq or 0),
                int(info.ack_floor.stream_seq or 0),
                int(info.num_pending or 0),
            )

        return await run_asyncio(go)


@pytest.fixture
async def bus() -> AsyncIterator[DendriteBus]:
    """Dendrite's streams and durables under a fresh prefix; deleted afterwards."""
    async with open_bridge():
        try:
            nc = await run_asyncio(nats.connect, NATS_URL)
        except Exception as exc:
            pytest.fail(f"NATS JetStream is unreachable at {NATS_URL}: {exc}")
        bus = DendriteBus(nc, new_prefix())
        try:
            await bus.setup()
            yield bus
        finally:
            with trio.CancelScope(shield=True):
                await bus.teardown()
                await run_asyncio(nc.close)


@pytest.fixture
def js_config(config: Config, bus: DendriteBus) -> Config:
    return dataclasses.replace(config, jetstream=NATS_URL, jetstream_prefix=bus.prefix)


@pytest.fixture
async def js_service(js_config: Config) -> AsyncIterator[Service]:
    async with open_service(js_config) as svc:
        yield svc


@pytest.fixture
async def js_http(js_service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=js_service.addresses[0], timeout=30) as client:
        yield client


async def committed(service: Service, stream: str) -> int:
    """The sequence of ``stream`` trio-sync has committed (0 if none)."""

    async def op(conn: Conn) -> int:
        value = await conn.fetchval(
            "SELECT position FROM ingest_offsets WHERE source = $1", "jetstream:" + stream
        )
        return 0 if value is None else int(value)

    return await service.engine.read(op)


async def wait_committed(service: Service, bus: DendriteBus, name: str, seq: int) -> None:
    """Wait (10 s at most) until trio-sync has committed ``seq`` of stream ``name``."""
    with trio.fail_after(10):
        while await committed(service, bus.stream(name)) < seq:  # noqa: ASYNC110
            await trio.sleep(0.02)


async def rejects(service: Service) -> list[tuple[str, int, str, bytes]]:
    async def op(conn: Conn) -> list[tuple[str, int, str, bytes]]:
        rows = await conn.fetch(
            "SELECT source, position, reason, raw FROM ingest_rejects ORDER BY id"
        )
        return [(r[0], int(r[1]), r[2], bytes(r[3])) for r in rows]

    return await service.engine.read(op)
