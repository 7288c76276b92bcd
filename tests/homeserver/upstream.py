"""A small real homeserver stand-in: an ASGI app under Hypercorn on a free port.

It answers ``GET /_matrix/client/v3/account/whoami`` from a token table, its own
``/_matrix/client/versions``, and every other path with a JSON body naming itself; every
request is recorded, so tests can see what reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

VERSIONS = {
    "versions": ["r0.6.1", "v1.1", "v1.2"],
    "unstable_features": {"org.example.homeserver_only": True, "org.matrix.msc4222": False},
}


@dataclass
class Upstream:
    """What the stand-in knows and what it has seen."""

    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: When set, whoami answers with this (status, body) instead.
    whoami_answer: tuple[int, dict[str, Any]] | None = None
    #: When set, whoami waits for it before answering.
    gate: trio.Event | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def whoami_calls(self) -> int:
        return sum(1 for _, path, _ in self.requests if path.endswith("/account/whoami"))

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        self.requests.append((scope["method"], path, headers))
        status, body = 200, {"served_by": "homeserver", "path": path}
        if path == "/_matrix/client/v3/account/whoami":
            if self.gate is not None:
                await self.gate.wait()
            status, body = self._whoami(headers.get("authorization", ""))
        elif path == "/_matrix/client/versions":
            body = VERSIONS
        data = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _whoami(self, authorization: str) -> tuple[int, dict[str, Any]]:
        if self.whoami_answer is not None:
            return self.whoami_answer
        token = authorization.removeprefix("Bearer ")
        if token not in self.tokens:
            return 401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"}
        user_id, device_id = self.tokens[token]
        return 200, {"user_id": user_id, "device_id": device_id, "is_guest": False}


@asynccontextmanager
async def run_upstream(upstream: Upstream | None = None) -> AsyncIterator[Upstream]:
    """Serve ``upstream`` (a new one by default) until the block exits."""
    upstream = upstream or Upstream()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(
            lambda task_status: serve(
                upstream.app, config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        upstream.url = addresses[0]
        try:
            yield upstream
        finally:
            stop.set()
