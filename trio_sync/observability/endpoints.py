"""``GET /metrics`` and ``GET /health`` as a plain ASGI responder: served on the main
listener, or alone on ``--metrics-listen``. Neither asks for an access token."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from ..http.asgi import ASGIApp, Receive, Scope, Send
from .health import Readiness, check_health
from .metrics import CONTENT_TYPE_LATEST, exposition

METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
PATHS = frozenset({METRICS_PATH, HEALTH_PATH})


async def _answer(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def serve_ops(
    scope: Scope,
    send: Send,
    readiness: Readiness,
    registry: CollectorRegistry | None,
) -> None:
    """Answer ``/health`` and (when ``registry`` is given) ``/metrics``; 404 otherwise."""
    path, method = scope["path"], scope["method"]
    if path not in PATHS or (path == METRICS_PATH and registry is None):
        body = orjson.dumps({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
        await _answer(send, 404, "application/json", body)
    elif method not in ("GET", "HEAD"):
        body = orjson.dumps({"errcode": "M_UNRECOGNIZED", "error": "Method not allowed"})
        await _answer(send, 405, "application/json", body)
    elif path == HEALTH_PATH:
        status, answer = await check_health(readiness)
        await _answer(send, status, "application/json", orjson.dumps(answer))
    else:
        assert registry is not None
        await _answer(send, 200, CONTENT_TYPE_LATEST, exposition(registry))


def ops_app(readiness: Readiness, registry: CollectorRegistry) -> ASGIApp:
    """The ASGI app of ``--metrics-listen``: only ``/metrics`` and ``/health``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": message["type"] + ".complete"})
                if kind == "shutdown":
                    return
        elif scope["type"] == "http":
            await serve_ops(scope, send, readiness, registry)

    return app
