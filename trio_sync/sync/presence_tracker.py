"""Presence set by devices as they sync (``set_presence``) or through ``PUT /presence``.

Each device's state is written through the ingest path as a ``presence`` message carrying
its ``device_id``; ingest combines a user's devices (online beats unavailable beats
offline) and moves the presence stream only when what others see changes. The tracker
remembers what each device last reported, so an idle long-poll repeating the same
``set_presence`` writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..ingest.apply import Applied
from ..storage.accounts import Device

Submit = Callable[[Sequence[Mapping[str, Any]]], Awaitable[Applied]]


class PresenceTracker:
    """Writes a device's presence when it differs from what that device last reported."""

    def __init__(self, submit: Submit) -> None:
        self._submit = submit
        self._last: dict[tuple[str, str], str] = {}

    async def set_device(self, device: Device, state: str, status_msg: str | None = None) -> None:
        """Record ``state`` (and ``status_msg``, ``""`` clearing it, None keeping it) for
        ``device``. A checkpoint when it writes; returns once the write is committed. If
        cancelled, the write may or may not have happened; the next report repeats it."""
        key = (device.user_id, device.device_id)
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
