"""``authenticate(token)``: one entry point, one cache, whichever provider checks tokens.

The provider is chosen by the ``auth`` setting (``local``, ``homeserver-database``,
``whoami``). Every answer goes through one :class:`TokenCache`:

* a known token is answered from memory — for ``local`` until trio-sync's token-change
  watch reports a change in any process (``Engine.change_watch`` over the
  ``token_changes`` counter: LISTEN/NOTIFY on PostgreSQL, ``PRAGMA data_version`` plus
  the counter on SQLite), for the homeserver's providers for ``auth_cache_ttl`` seconds;
* an unknown token is answered 401 from memory for ``auth_negative_ttl`` seconds (also
  forgotten at once on a local change, so a token just added works at once);
* concurrent requests with the same uncached token share one lookup;
* with a provider that can check many tokens in one query (``homeserver-database``),
  every cached token is checked again every ``auth_recheck_interval`` seconds
  (:meth:`Authenticator.recheck_forever`), and those gone (a logout) are forgotten: a
  logout is honoured within that interval rather than ``auth_cache_ttl``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from ..errors import MatrixError
from ..http.params import storable
from ..storage.accounts import Device
from ..storage.engine import ChangeWatch
from .providers import Rechecking, TokenProvider
from .token_cache import REJECTED, TokenCache

log = logging.getLogger(__name__)

#: At most this many tokens per re-check query.
RECHECK_CHUNK = 10_000


def unknown_token() -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token", soft_logout=False)


@dataclass(eq=False)
class _Lookup:
    """One provider call that other requests for the same token wait on."""

    done: trio.Event = field(default_factory=trio.Event)
    answered: bool = False
    device: Device | None = None
    error: MatrixError | None = None


class Authenticator:
    """Resolves access tokens to devices through a provider and the shared cache."""

    def __init__(
        self, provider: TokenProvider, cache: TokenCache, watch: ChangeWatch | None = None
    ) -> None:
        self.provider = provider
        self.cache = cache
        self._watch = watch
        self._pending: dict[str, _Lookup] = {}
        #: How many times the provider was asked (for tests and the benchmark).
        self.lookups = 0

    async def recheck_forever(self, interval: float, provider: Rechecking) -> None:
        """Every ``interval`` seconds, ask ``provider`` which cached tokens still exist
        (one query per :data:`RECHECK_CHUNK` tokens) and forget the others. When it
        cannot be asked, answers stay cached (at most ``auth_cache_ttl``) and the next
        round tries again. Runs until cancelled; cancellation loses nothing."""
        failing = False
        while True:
            await trio.sleep(interval)
            tokens = self.cache.accepted()
            try:
                for start in range(0, len(tokens), RECHECK_CHUNK):
                    chunk = tokens[start : start + RECHECK_CHUNK]
                    valid = await provider.recheck(chunk)
                    self.cache.forget(set(chunk) - valid)
            except MatrixError as exc:
                if not failing:
                    log.warning("re-checking cached access tokens: %s", exc.message)
                failing = True
            else:
                failing = False

    def invalidate(self) -> None:
        """Forget every cached answer (a device or token changed in this process)."""
        self.cache.clear()

    async def authenticate(self, token: str) -> Device:
        """The device ``token`` belongs to; 401 ``M_UNKNOWN_TOKEN`` if none.

        A checkpoint only when the provider is asked. Errors of the provider (502/503)
        are raised, never cached. If cancelled, nothing is cached and requests waiting on
        this lookup ask again themselves.
        """
        if not storable(token):
            # A NUL or a lone surrogate: no backend could hold it, so no device has it.
            raise unknown_token()
        if self._watch is not None and self._watch.changed():
            self.cache.clear()
        while True:
            hit = self.cache.get(token)
            if hit is REJECTED:
                raise unknown_token()
            if isinstance(hit, Device):
                return hit
            pending = self._pending.get(token)
            if pending is None:
                return await self._lookup(token)
            await pending.done.wait()
            if pending.error is not None:
                err = pending.error
                raise MatrixError(err.status, err.errcode, err.message, **err.extra)
            if pending.answered:
                if pending.device is None:
                    raise unknown_token()
                return pending.device
            # The lookup was cancelled: try again.

    async def _lookup(self, token: str) -> Device:
        pending = self._pending[token] = _Lookup()
        generation = self.cache.generation
        try:
            self.lookups += 1
            device = await self.provider.lookup(token)
            pending.answered, pending.device = True, device
        except MatrixError as exc:
            pending.error = exc
            raise
        finally:
            del self._pending[token]
            pending.done.set()
        self.cache.put(token, device, generation)
        if device is None:
            raise unknown_token()
        return device
