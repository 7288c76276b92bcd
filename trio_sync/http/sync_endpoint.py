"""``GET /sync`` served straight from ASGI, inside the Quart-Trio app.

A long-poll spends nearly all its life parked. Served as a Quart view, each parked poll
also holds a request context, a request object with its header and argument structures,
a session and an app context — about a third of its memory. This endpoint needs none of
them: it parses the query string, authenticates, waits in the notifier and writes one JSON
body. It keeps everything else the Quart routes have: Matrix error bodies, CORS headers,
and cancellation when the client goes away.

A request whose answer is ready (see :mod:`trio_sync.sync.handler`) runs straight through
in the connection's task: no nursery, no child task, no cancel scope of its own. A request
that parks reads its client's messages in that same task, inside the cancel scope the
notifier cancels on news (Quart-Trio's own connection runs a second task per request for
this): ``http.disconnect`` ends the wait at once, the notifier forgets the waiter, and
nothing is sent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

import orjson

from ..errors import MatrixError, StorageError
from ..sync.handler import ClientGone, Park
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


def _until_gone(receive: Receive) -> Park:
    async def until_gone() -> None:
        """Read the client's messages until it goes away (then: ClientGone)."""
        while (await receive())["type"] != "http.disconnect":
            pass
        raise ClientGone

    return until_gone


async def serve_sync(service: Service, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``GET /sync``. A parked request whose client leaves is cancelled at once
    and sends nothing."""
    try:
        args, tokens = _query(scope)
        check_query(args.items())
        token = token_from(_headers(scope, b"authorization"), tokens)
        request = parse_sync_request(args)
        del args
        device = await service.auth.authenticate(token)
        scope[USER_KEY] = device.user_id
        status, body = 200, (await service.sync.sync(device, request, _until_gone(receive))).dumps()
    except ClientGone:
        return
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
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *CORS_HEADERS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
