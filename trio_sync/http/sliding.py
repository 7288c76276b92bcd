"""``POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync``: Simplified
Sliding Sync (MSC4186). ``pos``, ``timeout`` and ``set_presence`` come as query
parameters or in the body; the body must be a JSON object (400 ``M_NOT_JSON`` /
``M_BAD_JSON`` otherwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from quart import Response, request
from quart_trio import QuartTrio

from ..sliding.request import parse_sliding_request
from .common import authenticate, json_response, request_object

if TYPE_CHECKING:
    from ..service import Service

SLIDING_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
#: What ``/versions`` advertises so that clients use sliding sync.
UNSTABLE_FEATURE = "org.matrix.simplified_msc3575"


def add_routes(app: QuartTrio, service: Service) -> None:
    @app.post(SLIDING_PATH)
    async def sliding_sync() -> Response:
        device = await authenticate(service)
        body = await request_object(empty_ok=True)
        req = parse_sliding_request(request.args, body)
        return json_response(orjson.dumps(await service.sliding.sync(device, req)))
