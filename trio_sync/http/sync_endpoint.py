"""``GET /sync`` served straight from ASGI, inside the Quart-Trio app.

A long-poll spends nearly all its life parked. Served as a Quart view, each parked poll
also holds a request context, a request object with its header and argument structures,
a session and an app context — about a third of its memory. This endpoint needs none of
them: it parses the query string, authenticates, waits in the notifier and writes one JSON
body. It keeps everything else the Quart routes have: Matrix error bodies, CORS headers,
and cancellation when the client goes away (a child task watches for ``http.disconnect``
and cancels the request's scope, exactly as Quart-Trio's own connection does).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson
import trio

from ..errors import MatrixError, StorageError
from ..sync.request import parse_sync_request
from .asgi import USER_KEY, Receive, Scope, Send
from .auth import token_from
from .params import check_query

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger(__name__)

SYNC_PATHS = frozenset({"/_matrix/client/v3/sync", "/_matrix/client/r0/sync"})
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"X-Requested-With, Content-Type, Authorization"),
]


def is_sync_request(scope: Scope) -> bool:
    """True for ``GET /_matrix/client/{v3,r0}/sync``."""
    return scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in SYNC_PATHS


def _query(scope: Scope) -> tuple[dict[str, str], list[str]]:
    """The query parameters (the first of repeated ones wins) and every ``access_token``."""
    args: dict[str, str] = {}
    tokens: list[str] = []
    raw = scope.get("query_string", b"").decode("utf-8", "replace")
    for key, value in parse_qsl(raw, keep_blank_values=True):
        args.setdefault(key, value)
        if key == "access_token":
            tokens.append(value)
    return args, tokens


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [
        bytes(value).decode("latin-1") for key, value in scope["headers"] if key.lower() == name
    ]


async def _watch_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def serve_sync(service: Service, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``GET /sync``. Cancelled at once, sending nothing, if the client leaves."""
    status = 200
    body: bytes | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_disconnect, receive, nursery.cancel_scope)
        try:
            args, tokens = _query(scope)
            check_query(args.items())
            token = token_from(_headers(scope, b"authorization"), tokens)
            request = parse_sync_request(args)
            del args
            device = await service.auth.authenticate(token)
            scope[USER_KEY] = device.user_id
            body = (await service.sync.sync(device, request)).dumps()
        except MatrixError as exc:
            status, body = exc.status, orjson.dumps(exc.body())
        except StorageError as exc:
            # Unreachable even after a retry: one line, no traceback (see http/app.py).
            log.warning("/sync: database unavailable: %s", exc)
            status = 503
            body = b'{"errcode":"M_UNKNOWN","error":"Database unavailable; try again shortly"}'
        except Exception:
            log.exception("unhandled error in /sync")
            status = 500
            body = b'{"errcode":"M_UNKNOWN","error":"Internal server error"}'
        nursery.cancel_scope.cancel()
    if body is None:  # the client went away
        return
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *CORS_HEADERS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    with trio.CancelScope(shield=True):  # see asgi.shield_final_send
        await send({"type": "http.response.body", "body": body, "more_body": False})
