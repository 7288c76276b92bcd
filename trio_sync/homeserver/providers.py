"""Where an access token is checked: trio-sync's own devices, the homeserver's devices
table, or the homeserver's ``/account/whoami``.

A provider answers one token: its device, or None when the token is unknown. It raises a
:class:`MatrixError` only when it cannot tell (the homeserver or its database is down:
503; the homeserver answered something unusable: 502; or the homeserver refused the
token for a reason of its own, such as a deactivated account, passed on as it is).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import httpx
import orjson

from ..config import Config
from ..errors import MatrixError, StorageError
from ..storage import Engine
from ..storage.accounts import Device, device_for_token
from .database import HomeserverDatabase, device_for_access_token, existing_access_tokens

log = logging.getLogger(__name__)

WHOAMI_PATH = "/_matrix/client/v3/account/whoami"


class TokenProvider(Protocol):
    """Checks access tokens against one authority."""

    #: Seconds a valid answer may be reused; None means until a change is signalled.
    ttl: float | None

    async def lookup(self, token: str) -> Device | None:
        """The token's device, or None if the authority does not know it. A checkpoint;
        cancelling it leaves nothing behind."""
        ...


@runtime_checkable
class Rechecking(Protocol):
    """A provider that can tell, in one call, which of many accepted tokens still exist."""

    async def recheck(self, tokens: Sequence[str]) -> set[str]:
        """The tokens of ``tokens`` still valid. A checkpoint; raises :func:`unavailable`
        when the authority cannot be asked."""
        ...


def unavailable(what: str) -> MatrixError:
    """503 ``M_UNKNOWN``: the authority that checks tokens cannot be reached."""
    return MatrixError(503, "M_UNKNOWN", f"Cannot check the access token: {what}")


class LocalProvider:
    """Devices registered with trio-sync itself (``token add``, ``service.add_device``).

    Answers are kept until the token-change watch reports a change, never by expiry.
    """

    ttl: float | None = None

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def lookup(self, token: str) -> Device | None:
        return await self._engine.read_one(device_for_token, token)


class HomeserverDatabaseProvider:
    """The homeserver's own devices table (Dendrite's ``userapi_devices``), read only.

    The homeserver cannot tell trio-sync about a logout, so a valid answer is reused for
    at most ``ttl`` seconds, and :meth:`recheck` lets the authenticator ask about every
    cached token at once, every ``auth_recheck_interval`` seconds
    (:meth:`~trio_sync.homeserver.auth.Authenticator.recheck_forever`).
    """

    def __init__(self, db: HomeserverDatabase, ttl: float) -> None:
        self._db = db
        self.ttl: float | None = ttl

    async def lookup(self, token: str) -> Device | None:
        try:
            return await self._db.engine.read_one(device_for_access_token, token)
        except StorageError as exc:
            log.warning("homeserver database: %s", exc)
            raise unavailable("the homeserver's database is unreachable") from None

    async def recheck(self, tokens: Sequence[str]) -> set[str]:
        try:
            return await self._db.engine.read_one(existing_access_tokens, tokens)
        except StorageError as exc:
            log.warning("homeserver database: %s", exc)
            raise unavailable("the homeserver's database is unreachable") from None


def _plain(token: str) -> bool:
    """Whether ``token`` can be sent in a header at all (printable ASCII, no spaces)."""
    return token.isascii() and token.isprintable() and " " not in token


class WhoamiProvider:
    """``GET {homeserver}/_matrix/client/v3/account/whoami`` with the client's token.

    Works with any homeserver. A valid answer is reused for ``ttl`` seconds.
    """

    def __init__(self, client: httpx.AsyncClient, homeserver_url: str, ttl: float) -> None:
        self._client = client
        self._url = homeserver_url.rstrip("/") + WHOAMI_PATH
        self.ttl: float | None = ttl

    async def lookup(self, token: str) -> Device | None:
        if not _plain(token):
            return None
        try:
            resp = await self._client.get(self._url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("whoami at %s failed: %r", self._url, exc)
            raise unavailable("the homeserver is unreachable") from None
        if resp.status_code == 401:
            return None
        body = _json_object(resp.content)
        if resp.status_code == 200:
            user_id = body.get("user_id")
            device_id = body.get("device_id", "")
            if isinstance(user_id, str) and user_id and isinstance(device_id, str):
                return Device(user_id, device_id, None)
        elif resp.status_code in (403, 429) and isinstance(errcode := body.get("errcode"), str):
            # The homeserver's own verdict (deactivated, locked, rate limited): pass it on.
            extra = {k: v for k, v in body.items() if k not in ("errcode", "error")}
            raise MatrixError(resp.status_code, errcode, str(body.get("error", "")), **extra)
        log.warning("whoami at %s answered HTTP %d: %.200r", self._url, resp.status_code, body)
        raise MatrixError(
            502, "M_UNKNOWN", f"The homeserver answered whoami with HTTP {resp.status_code}"
        )


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def choose_provider(
    config: Config,
    engine: Engine,
    homeserver_db: HomeserverDatabase | None,
    client: httpx.AsyncClient | None,
) -> TokenProvider:
    """The provider the ``auth`` setting names (the config is already checked)."""
    if config.auth == "homeserver-database":
        assert homeserver_db is not None
        return HomeserverDatabaseProvider(homeserver_db, config.auth_cache_ttl)
    if config.auth == "whoami":
        assert client is not None and config.homeserver_url is not None
        return WhoamiProvider(client, config.homeserver_url, config.auth_cache_ttl)
    return LocalProvider(engine)
