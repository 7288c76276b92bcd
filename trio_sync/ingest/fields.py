"""Checked reads of log-message fields: a wrong type or shape is a :class:`BadMessage`."""

from __future__ import annotations

from typing import Any

from .bad_message import BadMessage

_SAFE = 1 << 53  # canonical JSON's integer range


def no_nul(value: str, key: str) -> str:
    """``value``, if it has no NUL character: such text cannot be stored in PostgreSQL (nor
    compared), so a message carrying one in a stored field is rejected on every backend."""
    if "\x00" in value:
        raise BadMessage(f"{key!r} contains a NUL character")
    return value


def text(
    obj: dict[str, Any], key: str, *, optional: bool = False, max_len: int | None = None
) -> Any:
    """A non-empty string without NUL characters (None if absent and ``optional``)."""
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or (max_len is not None and len(value) > max_len):
        raise BadMessage(f"{key!r} must be a non-empty string")
    return no_nul(value, key)


def user_id(obj: dict[str, Any], key: str = "user_id", *, optional: bool = False) -> Any:
    """A user ID: ``@localpart:server``."""
    value = text(obj, key, optional=optional)
    if value is not None and not (value.startswith("@") and ":" in value):
        raise BadMessage(f"{key!r} must be a user ID, not {value[:80]!r}")
    return value


def room_id(obj: dict[str, Any], key: str = "room_id") -> str:
    """A room ID: ``!`` then at least one character (room version 12 IDs have no server
    part)."""
    value = text(obj, key)
    if not (value.startswith("!") and len(value) > 1):
        raise BadMessage(f"{key!r} must be a room ID, not {value[:80]!r}")
    return str(value)


def integer(obj: dict[str, Any], key: str, default: int | None = None) -> int:
    """An integer in canonical JSON's range (``default`` if absent)."""
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadMessage(f"{key!r} must be an integer")
    if not -_SAFE < value < _SAFE:
        raise BadMessage(f"{key!r} is out of range")
    return value


def count(obj: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    """A non-negative integer (None if absent and ``optional``)."""
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _SAFE:
        raise BadMessage(f"{key!r} must be a non-negative integer")
    return value


def mapping(obj: dict[str, Any], key: str, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object (``{}`` if absent and ``optional``)."""
    value = obj.get(key)
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise BadMessage(f"{key!r} must be an object")
    return value
