"""``GET /sync`` served straight from ASGI, inside the Quart-Trio app.

A long-poll spends nearly all its life parked. Served as a Quart view, each parked poll
also holds a request context, a request object with its header and argument structures,
a session and an app context — about a third of its memory. This endpoint needs none of
them: it parses the query string, authenticates, waits in the notifier and writes one JSON
body. It keeps everything else the Quart routes have: Matrix error bodies, CORS headers,
and cancellation when the client goes away.

A request whose answer is ready (see :mod:`trio_sync.sync.handler`) runs straight through
in the connection's task: no nursery, no child task, no cancel scope of its own. A request
that parks reads its client's messages in that same task and in this module's own frame
(between the handler's ``start`` and ``resume``), inside the cancel scope the notifier
cancels on news (Quart-Trio's own connection runs a second task per request for this):
``http.disconnect`` ends the wait at once, the notifier forgets the waiter, and nothing
is sent.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
import trio

from ..errors import MatrixError, StorageError
from ..sync.handler import Waiting
from ..sync.request import SyncRequest, parse_sync_request
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


def _parse(scope: Scope) -> tuple[SyncRequest, str]:
    """The request and its access token; 400 or 401 as a :class:`MatrixError`."""
    args, tokens = _query(scope)
    check_query(args.items())
    token = token_from(_headers(scope, b"authorization"), tokens)
    return parse_sync_request(args), token


class SyncEndpoint:
    """The ASGI entry of the app (:class:`~trio_sync.http.app.TrioSyncApp` derives from it):
    ``GET /sync`` answered in this one frame, every other request passed to
    :meth:`serve_other`; each counted and timed by :meth:`record`.

    The ``/sync`` code is here rather than in a function of its own so that a parked poll's
    stack is this frame over the channel read, not two coroutines (the one the server
    calls and the one it would await): a coroutine fewer per parked poll."""

    service: Service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer one ``GET /sync``; the status recorded is the one sent, or 499 when the
        client left while its request was parked (it is cancelled at once and nothing is
        sent).

        The wait is here rather than in the handler (its :meth:`~SyncHandler.sync` is the
        same steps with a park hook): nothing of the query string or headers stays
        referenced."""
        if not is_sync_request(scope):
            await self.serve_other(scope, receive, send)
            return
        started = time.perf_counter()
        status = 499  # the client went away before an answer
        try:
            service = self.service
            try:
                handler = service.sync
                request, token = _parse(scope)
                device = await service.auth.authenticate(token)
                del token
                scope[USER_KEY] = device.user_id
                handler.begin(device)
                try:
                    answer = await handler.start(device, request)
                    while isinstance(answer, Waiting):
                        with trio.CancelScope(deadline=answer.deadline) as wait:
                            handler.park(answer, wait)
                            try:
                                while (await receive())["type"] != "http.disconnect":
                                    pass
                                return
                            finally:
                                handler.unpark(answer, wait)
                        answer = await handler.resume(answer)
                finally:
                    handler.end(device)
                answered, body = 200, answer.dumps()
            except MatrixError as exc:
                answered, body = exc.status, orjson.dumps(exc.body())
            except StorageError as exc:
                # Unreachable even after a retry: one line, no traceback (see http/app.py).
                log.warning("/sync: database unavailable: %s", exc)
                answered = 503
                body = b'{"errcode":"M_UNKNOWN","error":"Database unavailable; try again shortly"}'
            except Exception:
                log.exception("unhandled error in /sync")
                answered = 500
                body = b'{"errcode":"M_UNKNOWN","error":"Internal server error"}'
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *CORS_HEADERS,
            ]
            await send({"type": "http.response.start", "status": answered, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            status = answered
        finally:
            self.record(scope, scope["path"], status, started)

    async def serve_other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request but ``GET /sync`` (lifespan included)."""
        raise NotImplementedError

    def record(self, scope: Scope, endpoint: str, status: int, started: float) -> None:
        """Count and time one HTTP request (``started``: its ``time.perf_counter()``)."""
        raise NotImplementedError
