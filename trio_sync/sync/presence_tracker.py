"""Presence set by devices as they sync (``set_presence``) or through ``PUT /presence``.

Each device's state is written through the ingest path as a ``presence`` message carrying
its ``device_id``; ingest combines a user's devices (online beats unavailable beats
offline) and moves the presence stream only when what others see changes. The tracker
remembers what each device last reported, so an idle long-poll repeating the same
``set_presence`` writes nothing.

A device that stops syncing goes offline: :meth:`PresenceTracker.run` writes ``offline``
for a device that has had no ``/sync`` in flight and no presence report for
``offline_after`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from ..ingest.apply import Applied
from ..storage.accounts import Device

Submit = Callable[[Sequence[Mapping[str, Any]]], Awaitable[Applied]]


class Syncing:
    """See :meth:`PresenceTracker.syncing`."""

    __slots__ = ("device", "tracker")

    def __init__(self, tracker: PresenceTracker, device: Device) -> None:
        self.tracker = tracker
        self.device = device

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.tracker.stop_syncing(self.device)


class PresenceTracker:
    """Writes a device's presence when it differs from what that device last reported."""

    def __init__(self, submit: Submit, offline_after: float = 30.0) -> None:
        self._submit = submit
        self._offline_after = offline_after
        self._last: dict[tuple[str, str], str] = {}
        #: When each device last reported or finished a /sync (trio clock).
        self._seen: dict[tuple[str, str], float] = {}
        #: How many /sync requests of each device are in flight.
        self._syncing: dict[tuple[str, str], int] = {}

    def syncing(self, device: Device) -> Syncing:
        """A context manager marking ``device`` as syncing for the duration of its block
        (it cannot time out while a long-poll of it is parked)."""
        self.start_syncing(device)
        return Syncing(self, device)

    def start_syncing(self, device: Device) -> None:
        """Mark ``device`` as syncing until the matching :meth:`stop_syncing` (call that
        in a ``finally``: a parked poll then holds no context manager). Never a
        checkpoint."""
        key = (device.user_id, device.device_id)
        self._syncing[key] = self._syncing.get(key, 0) + 1

    def stop_syncing(self, device: Device) -> None:
        """End one :meth:`start_syncing` of ``device``. Never a checkpoint."""
        key = (device.user_id, device.device_id)
        left = self._syncing[key] - 1
        if left:
            self._syncing[key] = left
        else:
            del self._syncing[key]
        self._seen[key] = trio.current_time()

    async def expire(self) -> int:
        """Write ``offline`` for every device that has stopped syncing; return how many.

        A checkpoint when it writes. If cancelled, devices not yet written are written by
        the next call."""
        cutoff = trio.current_time() - self._offline_after
        stale = [
            key
            for key, state in self._last.items()
            if state != "offline" and key not in self._syncing and self._seen.get(key, 0) < cutoff
        ]
        for user_id, device_id in stale:
            body = {"user_id": user_id, "device_id": device_id, "presence": "offline"}
            await self._submit([{"type": "presence", "presence": body}])
            self._last[(user_id, device_id)] = "offline"
            self._seen.pop((user_id, device_id), None)
        return len(stale)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Time devices out for ever (until cancelled), checking every third of
        ``offline_after``."""
        task_status.started()
        while True:
            await trio.sleep(self._offline_after / 3)
            await self.expire()

    async def set_device(self, device: Device, state: str, status_msg: str | None = None) -> None:
        """Record ``state`` (and ``status_msg``, ``""`` clearing it, None keeping it) for
        ``device``. A checkpoint when it writes; returns once the write is committed. If
        cancelled, the write may or may not have happened; the next report repeats it."""
        key = (device.user_id, device.device_id)
        self._seen[key] = trio.current_time()
        if status_msg is None and self._last.get(key) == state:
            return
        body: dict[str, Any] = {
            "user_id": device.user_id,
            "device_id": device.device_id,
            "presence": state,
        }
        if status_msg is not None:
            body["status_msg"] = status_msg
        self._last.pop(key, None)
        await self._submit([{"type": "presence", "presence": body}])
        self._last[key] = state
