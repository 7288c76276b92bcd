"""JSON responses for the Quart routes."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Response


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` (or bytes already encoded) as an ``application/json`` response."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status=status, content_type="application/json")
