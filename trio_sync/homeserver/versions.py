"""The homeserver's own ``GET /_matrix/client/versions``, fetched and kept briefly.

Beside a homeserver, trio-sync answers ``/versions`` for it (clients discover sliding
sync there): the homeserver's ``versions`` as they are — most endpoints are the
homeserver's — and its ``unstable_features`` with trio-sync's merged over them.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import trio

log = logging.getLogger(__name__)

VERSIONS_PATH = "/_matrix/client/versions"


class HomeserverVersions:
    """A cached copy of the homeserver's ``/versions`` answer."""

    def __init__(self, client: httpx.AsyncClient, homeserver_url: str, ttl: float) -> None:
        self._client = client
        self._url = homeserver_url.rstrip("/") + VERSIONS_PATH
        self._ttl = ttl
        self._body: dict[str, Any] | None = None
        self._until = -float("inf")

    async def get(self) -> dict[str, Any] | None:
        """The homeserver's answer (at most ``ttl`` seconds old), or None if it cannot be
        had now (failures are not cached). A checkpoint when it fetches."""
        if self._body is not None and trio.current_time() < self._until:
            return self._body
        try:
            resp = await self._client.get(self._url)
            body = orjson.loads(resp.content) if resp.status_code == 200 else None
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            log.warning("GET %s failed: %r", self._url, exc)
            return None
        if not isinstance(body, dict) or not isinstance(body.get("versions"), list):
            log.warning("GET %s answered HTTP %d without versions", self._url, resp.status_code)
            return None
        self._body, self._until = body, trio.current_time() + self._ttl
        return body


def merge_versions(
    homeserver: dict[str, Any] | None, versions: list[str], unstable: dict[str, bool]
) -> dict[str, Any]:
    """The ``/versions`` body: the homeserver's, with ``unstable`` merged over its
    ``unstable_features``; trio-sync's own alone when there is no homeserver answer."""
    if homeserver is None:
        return {"versions": versions, "unstable_features": unstable}
    theirs = homeserver.get("unstable_features")
    merged = {**(theirs if isinstance(theirs, dict) else {}), **unstable}
    return {**homeserver, "unstable_features": merged}
