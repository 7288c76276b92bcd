"""Identifiers and parameters checked where requests enter, for every route at once.

Path parameters are checked by name (``room_id``, ``event_id``, ``user_id``,
``event_type``, ``tag``, ``txn_id``, ``filter_id``, ``receipt_type``) before any view
runs (:func:`check_view_args`, a ``before_request`` hook), and every query parameter is
checked for characters no database can hold (:func:`check_query`); ``/sync``, served
outside Quart, calls the same functions. A bad one is 400 ``M_INVALID_PARAM``, so no
query ever reaches storage with a NUL character (which PostgreSQL cannot store or
compare) or a lone surrogate.

Shapes follow the spec's identifier grammar loosely: a sigil, at most 255 bytes, and for
user IDs a ``:server`` part. Room IDs of room version 12 have no server part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..errors import invalid_param

#: The longest identifier the spec allows, in bytes of UTF-8.
MAX_ID_BYTES = 255


def storable(value: str) -> bool:
    """Whether ``value`` is text every backend stores and compares as given: valid UTF-8
    (no lone surrogates) and no NUL."""
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str, what: str, *, sigil: str = "", server: bool = False) -> str:
    if not storable(value):
        raise invalid_param(f"{what} contains a character that is not allowed")
    if not value or len(value.encode()) > MAX_ID_BYTES:
        raise invalid_param(f"{what} must be 1 to {MAX_ID_BYTES} bytes long")
    if sigil and (not value.startswith(sigil) or len(value) < 2):
        raise invalid_param(f"Not a {what}: {value[:80]!r}")
    if server and ":" not in value[1:]:
        raise invalid_param(f"Not a {what}: {value[:80]!r}")
    return value


def room_id(value: str) -> str:
    """A room ID: ``!`` and an opaque part (400 ``M_INVALID_PARAM`` otherwise)."""
    return _text(value, "room ID", sigil="!")


def event_id(value: str) -> str:
    """An event ID: ``$`` and an opaque part."""
    return _text(value, "event ID", sigil="$")


def user_id(value: str) -> str:
    """A user ID: ``@localpart:server``."""
    return _text(value, "user ID", sigil="@", server=True)


def name(value: str, what: str = "parameter") -> str:
    """A type, tag, transaction or filter ID: non-empty, storable, at most 255 bytes."""
    return _text(value, what)


_PATH_RULES: dict[str, Callable[[str], str]] = {
    "room_id": room_id,
    "event_id": event_id,
    "user_id": user_id,
    "event_type": lambda v: name(v, "event type"),
    "tag": lambda v: name(v, "tag"),
    "txn_id": lambda v: name(v, "transaction ID"),
    "filter_id": lambda v: name(v, "filter ID"),
    "receipt_type": lambda v: name(v, "receipt type"),
}


def check_view_args(view_args: Mapping[str, object] | None) -> None:
    """Check a request's path parameters (400 ``M_INVALID_PARAM`` for the first bad one)."""
    for key, value in (view_args or {}).items():
        if isinstance(value, str):
            _PATH_RULES.get(key, name)(value)


#: Query parameters checked elsewhere: the access token is judged by authentication
#: (a bad one is 401 ``M_UNKNOWN_TOKEN``).
_QUERY_SKIP = frozenset({"access_token"})


def check_query(items: Iterable[tuple[str, str]]) -> None:
    """Check every query parameter for characters no backend can hold."""
    for key, value in items:
        if key in _QUERY_SKIP:
            continue
        if not storable(key) or not storable(value):
            raise invalid_param(f"Query parameter {key[:40]!r} contains a character not allowed")
