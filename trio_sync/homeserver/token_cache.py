"""The access-token cache every authentication provider shares.

Two bounded LRU maps keyed by the token: devices (a known token, kept until it is
invalidated or, for providers that cannot learn of changes, until ``ttl``) and rejections
(an unknown token, kept ``negative_ttl`` seconds). Both are bounded, so neither many
clients nor a flood of made-up tokens grows memory past ``size + negative_size`` entries.
Times are Trio's clock, so tests can drive them with ``MockClock``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import trio

from ..storage.accounts import Device

#: What the cache says about a token: a device, a rejection, or nothing (ask the provider).
REJECTED = object()


class TokenCache:
    """A bounded token → device map with expiring rejections. Not thread-safe (one Trio
    thread uses it); every method is synchronous."""

    def __init__(
        self,
        *,
        ttl: float | None,
        negative_ttl: float,
        size: int = 100_000,
        negative_size: int = 10_000,
    ) -> None:
        self._ttl = math.inf if ttl is None else ttl
        self._negative_ttl = negative_ttl
        self._size = size
        self._negative_size = negative_size
        self._devices: OrderedDict[str, tuple[Device, float]] = OrderedDict()
        self._rejected: OrderedDict[str, float] = OrderedDict()
        #: Bumped by every :meth:`clear`; a lookup started before a clear is not stored.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._devices) + len(self._rejected)

    def get(self, token: str) -> Device | object | None:
        """The cached device, :data:`REJECTED`, or None when the provider must be asked."""
        now = trio.current_time()
        hit = self._devices.get(token)
        if hit is not None:
            if hit[1] > now:
                self._devices.move_to_end(token)
                return hit[0]
            del self._devices[token]
        until = self._rejected.get(token)
        if until is not None:
            if until > now:
                return REJECTED
            del self._rejected[token]
        return None

    def put(self, token: str, device: Device | None, generation: int) -> None:
        """Remember a provider's answer, unless the cache was cleared since ``generation``
        (the answer may predate the change that cleared it)."""
        if generation != self.generation:
            return
        now = trio.current_time()
        if device is None:
            self._rejected[token] = now + self._negative_ttl
            self._rejected.move_to_end(token)
            while len(self._rejected) > self._negative_size:
                self._rejected.popitem(last=False)
        else:
            self._rejected.pop(token, None)
            self._devices[token] = (device, now + self._ttl)
            self._devices.move_to_end(token)
            while len(self._devices) > self._size:
                self._devices.popitem(last=False)

    def accepted(self) -> list[str]:
        """Every token cached as valid (expired ones included until looked at)."""
        return list(self._devices)

    def forget(self, tokens: set[str]) -> None:
        """Drop ``tokens`` from the valid ones: their next use asks the provider."""
        for token in tokens:
            self._devices.pop(token, None)

    def clear(self) -> None:
        """Forget everything: a token or device changed somewhere."""
        self.generation += 1
        self._devices.clear()
        self._rejected.clear()
