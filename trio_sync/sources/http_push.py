"""The HTTP push source: ``POST /_trio_sync/v1/ingest`` with a bearer secret.

The body is JSON lines or one JSON array of messages. Like the in-process source it has
no position of its own: the pusher retries what it is unsure about, and a room event
delivered again keeps its first position.
"""

from __future__ import annotations

import hmac

import orjson

from ..errors import MatrixError, bad_json, forbidden, not_json

#: The source name pushed messages are applied (and rejected) under.
SOURCE = "http"


def check_secret(configured: str | None, authorization: str) -> None:
    """403 when push is disabled, 401 ``M_UNKNOWN_TOKEN`` for a wrong secret."""
    if not configured:
        raise forbidden("HTTP ingest is disabled: no ingest secret is configured")
    given = authorization.removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), configured.encode()):
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Wrong ingest secret")


def split_body(raw: bytes) -> list[bytes]:
    """The pushed messages, one raw JSON document each (400 for a malformed array)."""
    lines = [line for line in raw.splitlines() if line.strip()]
    if raw.lstrip().startswith(b"[") and len(lines) <= 1:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise not_json() from None
        if not isinstance(parsed, list):
            raise bad_json("expected a JSON array or JSON lines")
        lines = [orjson.dumps(m) for m in parsed]
    return lines
