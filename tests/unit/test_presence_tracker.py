"""Device presence reports, and devices that stop syncing going offline (MockClock)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio
import trio.testing

from trio_sync.ingest.apply import Applied
from trio_sync.storage.accounts import Device
from trio_sync.sync.presence_tracker import PresenceTracker

PHONE = Device("@alice:example.org", "PHONE", None)
LAPTOP = Device("@alice:example.org", "LAPTOP", None)


class Written:
    """The presence messages a tracker submitted, as (device_id, presence)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    async def __call__(self, messages: Sequence[Mapping[str, Any]]) -> Applied:
        for m in messages:
            self.messages.append((m["presence"]["device_id"], m["presence"]["presence"]))
        return Applied()


async def test_repeating_the_same_state_writes_nothing() -> None:
    written = Written()
    tracker = PresenceTracker(written)
    await tracker.set_device(PHONE, "online")
    await tracker.set_device(PHONE, "online")
    await tracker.set_device(PHONE, "unavailable")
    assert written.messages == [("PHONE", "online"), ("PHONE", "unavailable")]


async def test_a_device_that_stops_syncing_goes_offline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    written = Written()
    tracker = PresenceTracker(written, offline_after=30)
    with tracker.syncing(PHONE):
        await tracker.set_device(PHONE, "online")
    await trio.sleep(29)
    assert await tracker.expire() == 0
    await trio.sleep(2)
    assert await tracker.expire() == 1
    assert written.messages[-1] == ("PHONE", "offline")
    # Offline already: nothing more to write.
    assert await tracker.expire() == 0


async def test_a_parked_long_poll_keeps_its_device_online(
    autojump_clock: trio.testing.MockClock,
) -> None:
    written = Written()
    tracker = PresenceTracker(written, offline_after=30)
    with tracker.syncing(PHONE):
        await tracker.set_device(PHONE, "online")
        await trio.sleep(300)
        assert await tracker.expire() == 0
    assert written.messages == [("PHONE", "online")]


async def test_run_times_out_only_the_idle_device(autojump_clock: trio.testing.MockClock) -> None:
    written = Written()
    tracker = PresenceTracker(written, offline_after=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        await tracker.set_device(LAPTOP, "online")
        with tracker.syncing(PHONE):
            await tracker.set_device(PHONE, "online")
            await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert ("LAPTOP", "offline") in written.messages
    assert ("PHONE", "offline") not in written.messages
