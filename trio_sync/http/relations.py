"""Routes over the relations index: ``GET /_matrix/client/v1/rooms/{roomId}/relations/
{eventId}[/{relType}[/{eventType}]]`` and ``GET /_matrix/client/v1/rooms/{roomId}/threads``.

Each answer is one storage read, bounded by the notifier's current position.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from ..errors import invalid_param
from ..reads import messages as msg
from ..reads import relations as r
from ..storage.accounts import Device
from ..sync.timeline import Viewer
from .common import authenticate, json_response, room_id_param

if TYPE_CHECKING:
    from ..service import Service

PREFIX = "/_matrix/client/v1"
#: ``limit`` when the client gives none.
DEFAULT_LIMIT = 10


def _viewer(device: Device) -> Viewer:
    return Viewer(device.user_id, session_id=device.session_id, now_ms=int(time.time() * 1000))


def _boolean(name: str) -> bool | None:
    value = request.args.get(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise invalid_param(f"{name} must be 'true' or 'false'")
    return value == "true"


def _event_id_param(event_id: str) -> str:
    if not event_id.startswith("$") or len(event_id) > 255:
        raise invalid_param(f"Not an event ID: {event_id[:80]!r}")
    return event_id


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register the relations and threads routes (``/_matrix/client/v1`` only)."""

    def now() -> int:
        return service.notifier.current.pdu

    async def serve_relations(
        room_id: str, event_id: str, rel_type: str | None, event_type: str | None
    ) -> Response:
        device = await authenticate(service)
        direction = request.args.get("dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("dir must be 'b' or 'f'")
        start, to = request.args.get("from"), request.args.get("to")
        recurse = _boolean("recurse")
        if recurse is None:
            recurse = _boolean("org.matrix.msc3981.recurse")
        page = r.RelationsPage(
            rel_type=rel_type,
            event_type=event_type,
            recurse=recurse,
            backwards=direction == "b",
            from_token=start or None,
            start=msg.parse_boundary(start) if start else None,
            to=msg.parse_boundary(to) if to else None,
            limit=msg.parse_limit(request.args.get("limit"), DEFAULT_LIMIT),
        )
        body = await service.engine.read(
            r.relations,
            _viewer(device),
            room_id_param(room_id),
            _event_id_param(event_id),
            page,
            now(),
        )
        return json_response(body)

    @app.get(f"{PREFIX}/rooms/<room_id>/relations/<event_id>")
    async def relations(room_id: str, event_id: str) -> Response:
        return await serve_relations(room_id, event_id, None, None)

    @app.get(f"{PREFIX}/rooms/<room_id>/relations/<event_id>/<rel_type>")
    async def relations_of_type(room_id: str, event_id: str, rel_type: str) -> Response:
        return await serve_relations(room_id, event_id, rel_type, None)

    @app.get(f"{PREFIX}/rooms/<room_id>/relations/<event_id>/<rel_type>/<event_type>")
    async def relations_of_types(
        room_id: str, event_id: str, rel_type: str, event_type: str
    ) -> Response:
        return await serve_relations(room_id, event_id, rel_type, event_type)

    @app.get(f"{PREFIX}/rooms/<room_id>/threads")
    async def threads(room_id: str) -> Response:
        device = await authenticate(service)
        include = request.args.get("include", "all")
        if include not in ("all", "participated"):
            raise invalid_param("include must be 'all' or 'participated'")
        start = request.args.get("from")
        limit = msg.parse_limit(request.args.get("limit"), DEFAULT_LIMIT)
        if limit == 0:
            raise invalid_param("limit must be greater than zero")
        body = await service.engine.read(
            r.threads,
            _viewer(device),
            room_id_param(room_id),
            include == "participated",
            msg.parse_boundary(start) if start else None,
            limit,
            now(),
        )
        return json_response(body)
