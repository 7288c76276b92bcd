"""Exactly once over JetStream: bad messages, redeliveries, and Dendrite's own durables.

To-device messages are the discriminating payload: nothing deduplicates them on the way
in (Dendrite sends no transaction ID), so a message applied twice would reach the device
twice.
"""

from __future__ import annotations

from typing import Any

import httpx
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from trio_sync import Config, Service, open_service
from trio_sync.bridge import run_asyncio

from ..e2e.conftest import ALICE, BOB, sync
from .conftest import DendriteBus, rejects, wait_committed

TO_DEVICE = "OutputSendToDeviceEvent"


async def to_device_numbers(service: Service, token: str) -> list[int]:
    """Every to-device ``n`` the device receives, following ``next_batch`` to the end."""
    numbers: list[int] = []
    since = None
    async with httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as http:
        while True:
            body: dict[str, Any] = await sync(http, token, since=since)
            events = body.get("to_device", {}).get("events", [])
            if not events and since is not None:
                return numbers
            numbers += [e["content"]["n"] for e in events]
            since = body["next_batch"]


async def publish_numbered(bus: DendriteBus, numbers: range) -> int:
    seq = 0
    for n in numbers:
        seq = await bus.send_to_device(ALICE, BOB, "PHONE", "org.example.n", {"n": n})
    return seq


async def test_a_bad_message_is_recorded_with_its_sequence_then_acked(
    bus: DendriteBus, js_service: Service
) -> None:
    await bus.publish(TO_DEVICE, {"user_id": BOB, "sender": ALICE}, b"{not json")
    await bus.typing(BOB, "!r:example.org", True, 1000)  # fine
    await bus.publish("OutputTypingEvent", {"user_id": BOB, "room_id": "!r:example.org"})
    last = await publish_numbered(bus, range(1, 3))
    await wait_committed(js_service, bus, TO_DEVICE, last)
    await wait_committed(js_service, bus, "OutputTypingEvent", 2)

    found = sorted(await rejects(js_service), key=lambda r: r[0], reverse=True)
    assert [(source, seq) for source, seq, _, _ in found] == [
        ("jetstream:" + bus.stream("OutputTypingEvent"), 2),
        ("jetstream:" + bus.stream(TO_DEVICE), 1),
    ]
    assert "'typing'" in found[0][2]
    assert "not JSON" in found[1][2]
    assert found[1][3].startswith(b"NATS/1.0\r\n") and found[1][3].endswith(b"{not json")
    # The messages after the bad one were applied, and everything was acknowledged.
    token = await js_service.add_device(BOB, "PHONE")
    assert await to_device_numbers(js_service, token) == [1, 2]
    durable = bus.prefix + "TrioSync" + TO_DEVICE
    _, ack_floor, pending = await bus.durable_state(TO_DEVICE, durable)
    assert (ack_floor, pending) == (last, 0)
    # Dendrite's own durable was never touched: nothing delivered, everything pending.
    delivered, _, pending = await bus.durable_state(TO_DEVICE, bus.dendrite_durable(TO_DEVICE))
    assert (delivered, pending) == (0, last)


async def test_redelivered_messages_are_recognised_and_not_applied_twice(
    bus: DendriteBus, js_config: Config
) -> None:
    async with open_service(js_config) as service:
        last = await publish_numbered(bus, range(1, 4))
        await wait_committed(service, bus, TO_DEVICE, last)

    # The acknowledgements are lost: the durable starts over and delivers 1..3 again.
    durable = bus.prefix + "TrioSync" + TO_DEVICE

    async def reset() -> None:
        await bus.js.delete_consumer(bus.stream(TO_DEVICE), durable)
        await bus.js.add_consumer(
            bus.stream(TO_DEVICE),
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )

    await run_asyncio(reset)
    last = await publish_numbered(bus, range(4, 6))
    async with open_service(js_config) as service:
        await wait_committed(service, bus, TO_DEVICE, last)
        token = await service.add_device(BOB, "PHONE")
        assert await to_device_numbers(service, token) == [1, 2, 3, 4, 5]
        # The redelivered messages were acknowledged too.
        _, ack_floor, pending = await bus.durable_state(TO_DEVICE, durable)
        assert (ack_floor, pending) == (last, 0)
        assert await rejects(service) == []
