"""Answering a ``/sync`` from memory when only in-memory streams moved.

A typing change wakes every member of a room at once; each of their responses holds only
``m.typing`` (from the in-memory typing view), the joined rooms (from the notifier) and
the device's key counts. With the counts cached, such a response needs no storage read.
:data:`NO_STORAGE` is a connection that refuses every query: a provider that would need
storage raises :class:`StorageNeeded` and the handler reads storage after all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any, NoReturn

from ..storage import Row
from ..storage.accounts import Device
from ..storage.engine import Query
from ..tokens import StreamToken
from .response import KeyCounts, SyncResponse


class StorageNeeded(Exception):
    """A provider asked :data:`NO_STORAGE` for a query."""


class _NoStorage:
    dialect = "none"
    """A ``Conn`` for responses built from memory: every query raises."""

    def _refuse(self) -> NoReturn:
        raise StorageNeeded

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        self._refuse()

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        self._refuse()

    async def fetchval(self, sql: str, *args: object) -> Any:
        self._refuse()

    async def fetch_many(self, queries: Sequence[Query]) -> list[Sequence[Row]]:
        self._refuse()

    async def execute(self, sql: str, *args: object) -> None:
        self._refuse()

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._refuse()

    async def notify(self, channel: str) -> None:
        self._refuse()


NO_STORAGE = _NoStorage()


def only_typing_moved(since: StreamToken, now: StreamToken) -> bool:
    """True when ``since`` and ``now`` differ in the typing position alone."""
    return all(
        getattr(since, f.name) == getattr(now, f.name) for f in fields(now) if f.name != "typing"
    )


class KeyCountCache:
    """Each device's one-time-key counts as last read, valid while no device's counts
    have been written since (the notifier's ``key_counts_epoch`` has not moved)."""

    def __init__(self) -> None:
        self._epoch = -1
        self._counts: dict[tuple[str, str], KeyCounts] = {}

    def get(self, device: Device, epoch: int) -> KeyCounts | None:
        """The cached counts of ``device`` if still valid at ``epoch``, else None."""
        if epoch != self._epoch:
            return None
        return self._counts.get((device.user_id, device.device_id))

    def put(self, device: Device, epoch: int, resp: SyncResponse) -> None:
        """Remember the counts ``resp`` carries, read when the epoch was ``epoch``."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._counts = {}
        counts = (resp.one_time_keys_count, resp.unused_fallback_key_types)
        self._counts[(device.user_id, device.device_id)] = counts
