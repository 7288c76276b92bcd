"""Parsing ``GET /sync`` query parameters strictly (bad input is a 400, never a 500)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import invalid_param
from ..tokens import StreamToken

#: The longest a single long-poll may wait, whatever ``timeout`` asks for (ms).
MAX_TIMEOUT_MS = 10 * 60 * 1000
PRESENCE_STATES = ("online", "offline", "unavailable")
#: Each presence state to itself: a request keeps this module's string, not a copy from
#: its query string (every parked poll holds its request).
_PRESENCE = {state: state for state in PRESENCE_STATES}


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """A parsed ``/sync`` request."""

    since: StreamToken | None = None
    timeout_ms: int = 0
    full_state: bool = False
    set_presence: str = "online"
    filter: str | None = None
    #: Where room state goes: ``state``, or ``state_after`` (MSC4222, stable or prefixed).
    state_field: str = "state"


def _bool(args: Mapping[str, str], name: str) -> bool:
    value = args.get(name)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise invalid_param(f"{name} must be 'true' or 'false'")
    return value == "true"


def parse_sync_request(args: Mapping[str, str]) -> SyncRequest:
    """Build a :class:`SyncRequest` from query parameters; 400 ``M_INVALID_PARAM`` if bad."""
    since_text = args.get("since")
    since = StreamToken.parse(since_text) if since_text else None
    timeout_text = args.get("timeout", "0")
    if not (timeout_text.isascii() and timeout_text.isdigit()) or len(timeout_text) > 12:
        raise invalid_param("timeout must be a non-negative integer (milliseconds)")
    presence = _PRESENCE.get(args.get("set_presence", "online"))
    if presence is None:
        raise invalid_param("set_presence must be one of online, offline, unavailable")
    filter_text = args.get("filter")
    state_field = "state"
    if _bool(args, "use_state_after"):
        state_field = "state_after"
    elif _bool(args, "org.matrix.msc4222.use_state_after"):
        state_field = "org.matrix.msc4222.state_after"
    return SyncRequest(
        since=since,
        timeout_ms=min(int(timeout_text), MAX_TIMEOUT_MS),
        full_state=_bool(args, "full_state"),
        set_presence=presence,
        filter=filter_text or None,
        state_field=state_field,
    )
