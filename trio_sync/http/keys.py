"""``GET /keys/changes?from=…&to=…``: users whose device keys changed between two sync
tokens, and users the requester no longer shares a room with (the sync's
``device_lists``, over any range)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from ..errors import MatrixError
from ..sync.streams.device_lists import device_list_changes
from ..tokens import StreamToken
from .common import CLIENT_PREFIXES, authenticate, json_response

if TYPE_CHECKING:
    from ..service import Service


def _token(name: str) -> StreamToken:
    text = request.args.get(name)
    if not text:
        raise MatrixError(400, "M_MISSING_PARAM", f"'{name}' is required")
    return StreamToken.parse(text)


def add_routes(app: QuartTrio, service: Service) -> None:
    """Register ``keys/changes`` under every client prefix."""
    for prefix in CLIENT_PREFIXES:

        @app.get(f"{prefix}/keys/changes", endpoint=f"keys_changes{prefix}")
        async def keys_changes() -> Response:
            device = await authenticate(service)
            since, upto = _token("from"), _token("to")
            # Never past what is committed.
            current = service.notifier.current
            for stream in ("pdu", "device_list"):
                upto = upto.with_stream(
                    stream, min(getattr(upto, stream), getattr(current, stream))
                )
            changed, left = await service.engine.read(
                device_list_changes, device.user_id, since, upto
            )
            return json_response({"changed": changed, "left": left})
