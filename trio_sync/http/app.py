"""Routes, authentication, CORS and Matrix error bodies.

Every client-visible failure is a :class:`MatrixError` rendered as
``{"errcode", "error"}`` with its status; unknown paths are 404 ``M_UNRECOGNIZED``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..errors import MatrixError, StorageError
from ..filters import parse_filter
from ..homeserver.versions import merge_versions
from ..observability import endpoints as ops
from ..observability.logs import log_access
from ..observability.metrics import REQUEST_TIME, REQUESTS
from ..sources import http_push
from ..storage.accounts import Device, store_filter
from ..sync.request import parse_sync_request
from . import account_data, ephemeral, keys, presence, relations, sliding, to_device
from .asgi import ROUTE_KEY, USER_KEY, Message, Scope, shield_final_send
from .common import CLIENT_PREFIXES, json_response, own_user
from .common import authenticate as authenticate_request
from .common import request_body as _body
from .common import request_json as _request_json
from .connection import LeanHTTPConnection
from .params import check_query, check_view_args
from .rooms import add_room_routes
from .routemap import is_homeserver_write
from .sync_endpoint import CORS_HEADERS, SyncEndpoint

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger(__name__)

SPEC_VERSIONS = [f"v1.{n}" for n in range(1, 20)]
#: Unstable features served: MSC4222 (`state_after`, also stable since v1.16) and
#: Simplified Sliding Sync (MSC4186).
UNSTABLE = {"org.matrix.msc4222": True, sliding.UNSTABLE_FEATURE: True}
CORS = {name.decode(): value.decode() for name, value in CORS_HEADERS}
#: The answer while the database cannot be reached (a client retries it later).
UNAVAILABLE = {"errcode": "M_UNKNOWN", "error": "Database unavailable; try again shortly"}
#: The largest filter body accepted (a filter is small; its rooms lists are the bulk).
MAX_FILTER_BODY = 64 * 1024


_HTTP_ERRORS = {
    404: ("M_UNRECOGNIZED", "Unrecognized request"),
    405: ("M_UNRECOGNIZED", "Method not allowed"),
    413: ("M_TOO_LARGE", "Request too large"),
}


class TrioSyncApp(SyncEndpoint, QuartTrio):
    """The Quart-Trio app, with ``GET /sync`` answered without a Quart request context
    (:class:`SyncEndpoint`'s ``__call__``: every request passes there once and is counted,
    timed and, optionally, logged)."""

    asgi_http_class = LeanHTTPConnection

    def __init__(self, service: Service) -> None:
        super().__init__("trio_sync")
        self.service = service
        # Quart-Trio's own ASGI entry (``super().__call__`` would be SyncEndpoint's).
        self._quart = shield_final_send(super(SyncEndpoint, self).__call__)  # type: ignore[arg-type]

    async def serve_other(self, scope: Scope, receive: Any, send: Any) -> None:
        """Every request but ``GET /sync``: lifespan to Quart-Trio, the ops paths
        (metrics, health) when they are served here, the rest to the Quart routes."""
        if scope["type"] != "http":
            await self._quart(scope, receive, send)
            return
        started = time.perf_counter()
        status = 499  # the client went away before an answer

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        endpoint = path = scope["path"]
        try:
            if path in ops.PATHS:
                service = self.service
                registry = None if service.config.metrics_listen else service.registry
                await ops.serve_ops(scope, send_noting_status, service.readiness, registry)
            else:
                await self._quart(scope, receive, send_noting_status)
                endpoint = scope.get(ROUTE_KEY) or "unmatched"
        finally:
            self.record(scope, endpoint, status, started)

    def record(self, scope: Scope, endpoint: str, status: int, started: float) -> None:
        """Count and time one request (``started``: its ``time.perf_counter()``), and log
        it when access logging is on."""
        elapsed = time.perf_counter() - started
        method = scope["method"]
        code = str(status)
        REQUESTS.labels(endpoint, method, code).inc()
        REQUEST_TIME.labels(endpoint, method, code).observe(elapsed)
        if self.service.config.access_log:
            log_access(method, scope["path"], status, elapsed, scope.get(USER_KEY))


def create_app(service: Service) -> TrioSyncApp:
    """The ASGI app for ``service``: every route, CORS, Matrix errors."""
    app = TrioSyncApp(service)
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 60
    # Quart answers 413 (M_TOO_LARGE below) as soon as a declared Content-Length is over
    # it, or a chunked body grows past it; it keeps no more than this in memory.
    app.config["MAX_CONTENT_LENGTH"] = service.config.max_request_body

    async def authenticate() -> Device:
        return await authenticate_request(service)

    @app.errorhandler(MatrixError)
    async def matrix_error(exc: MatrixError) -> Response:
        return json_response(exc.body(), exc.status)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        errcode, message = _HTTP_ERRORS.get(status, ("M_UNKNOWN", exc.description or ""))
        return json_response({"errcode": errcode, "error": message}, status)

    @app.errorhandler(StorageError)
    async def storage_error(exc: StorageError) -> Response:
        # The database is unreachable even after a retry: say so in one line, no traceback.
        log.warning("%s %s: database unavailable: %s", request.method, request.path, exc)
        return json_response(UNAVAILABLE, 503)

    @app.errorhandler(Exception)
    async def internal_error(exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return json_response({"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500)

    @app.after_request
    async def cors(response: Response) -> Response:
        response.headers.update(CORS)
        return response

    @app.before_request
    async def preflight() -> Response | None:
        rule = request.url_rule
        scope: Scope = request.scope  # type: ignore[assignment]
        scope[ROUTE_KEY] = None if rule is None else rule.rule
        # CORS preflight for any path; routing (and its 404/405) applies to the rest.
        if request.method == "OPTIONS":
            return Response(b"", status=204)
        if not service.config.writes_local and is_homeserver_write(request.endpoint):
            raise MatrixError(
                404, "M_UNRECOGNIZED", "Unrecognized request: this write is for the homeserver"
            )
        return None

    @app.before_request
    async def check_params() -> None:
        # Every path and query parameter, before any view sees it (http/params.py).
        check_view_args(request.view_args)
        check_query(request.args.items(multi=True))

    @app.get("/_matrix/client/versions")
    async def versions() -> Response:
        theirs = None
        if service.homeserver_versions is not None:
            theirs = await service.homeserver_versions.get()
        return json_response(merge_versions(theirs, SPEC_VERSIONS, UNSTABLE))

    for prefix in CLIENT_PREFIXES:
        add_room_routes(app, prefix, authenticate)

        @app.get(f"{prefix}/sync", endpoint=f"sync{prefix}")
        async def sync() -> Response:
            # GET never gets here (TrioSyncApp.__call__ answers it in sync_endpoint.py);
            # this view answers HEAD and gives other methods their 405.
            device = await authenticate()
            resp = await service.sync.sync(device, parse_sync_request(request.args))
            return json_response(resp.dumps())

        @app.post(f"{prefix}/user/<user_id>/filter", endpoint=f"filter_post{prefix}")
        async def filter_post(user_id: str) -> Response:
            device = await authenticate()
            own_user(device, user_id, "create filters")
            filt = parse_filter(await _request_json(MAX_FILTER_BODY))
            canonical = orjson.dumps(filt.to_json(), option=orjson.OPT_SORT_KEYS).decode()
            filter_id = await service.engine.write(store_filter, user_id, canonical)
            return json_response({"filter_id": str(filter_id)})

        @app.get(f"{prefix}/user/<user_id>/filter/<filter_id>", endpoint=f"filter_get{prefix}")
        async def filter_get(user_id: str, filter_id: str) -> Response:
            device = await authenticate()
            own_user(device, user_id, "read filters")
            filt = await service.sync.stored_filter(user_id, filter_id)
            return json_response(filt.to_json())

    for routes in (account_data, ephemeral, presence, to_device, keys, sliding, relations):
        routes.add_routes(app, service)

    @app.post("/_trio_sync/v1/ingest")
    async def ingest_push() -> Response:
        http_push.check_secret(
            service.config.ingest_secret, request.headers.get("Authorization", "")
        )
        lines = http_push.split_body(await _body())
        applied = await service.ingest_raw(lines, source=http_push.SOURCE)
        return json_response(
            {
                "accepted": applied.accepted,
                "duplicates": applied.duplicates,
                "rejected": applied.rejected,
                "rejects": [{"offset": o, "reason": r} for o, r in applied.rejects],
                "next_batch": str(service.notifier.current),
            }
        )

    return app
