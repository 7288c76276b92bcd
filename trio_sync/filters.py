"""Matrix event filters: parsing, validation, matching and ``event_fields`` projection.

Validates the client-server API ``Filter`` object (spec v1.19): the body of
``POST /_matrix/client/v3/user/{userId}/filter`` and the inline JSON form of the ``filter``
query parameter of ``/sync``. Checked: every sub-filter (``presence``, ``account_data``,
``room`` and its ``timeline``/``state``/``ephemeral``/``account_data``) is an object; list
fields are lists of strings; ``rooms``/``not_rooms`` hold room IDs (``!…``) and
``senders``/``not_senders`` hold user IDs (``@localpart:server``); boolean fields are JSON
booleans; ``limit`` is an integer >= 1; ``event_format`` is ``client`` or ``federation``.
Unknown keys are ignored, as the spec allows. A body that is not JSON is a 400
``M_NOT_JSON``; JSON of the wrong shape is a 400 ``M_BAD_JSON``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Literal

from trio_sync.errors import bad_json, not_json

_USER_ID_RE = re.compile(r"@[^:]+:.+", re.DOTALL)
_PATH_TOKEN_RE = re.compile(r"\\([.\\])|(\.)|(\\|[^.\\]+)")
_MAX_SAFE_INT = (1 << 53) - 1  # canonical JSON's integer range


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """Compile an event-type pattern where ``*`` matches any run of characters."""
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.DOTALL)


def _type_matches(event_type: object, pattern: str) -> bool:
    if not isinstance(event_type, str):
        return False
    if "*" not in pattern:
        return event_type == pattern
    return _glob(pattern).fullmatch(event_type) is not None


def _allowed(value: object, allow: tuple[str, ...] | None, deny: tuple[str, ...]) -> bool:
    """Exact-match allow/deny rule: ``deny`` wins, ``allow=None`` admits everything."""
    if value in deny:
        return False
    return allow is None or value in allow


def _json_form(obj: Any) -> dict[str, Any]:
    """A filter dataclass as JSON: every field whose value differs from its default.

    ``types: []`` differs from the absent default (``None``) and so is kept, which is what
    makes ``parse_filter(f.to_json()) == f`` hold exactly.
    """
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value != f.default:
            out[f.name] = list(value) if isinstance(value, tuple) else _plain(value)
    return out


def _plain(value: Any) -> Any:
    return value.to_json() if hasattr(value, "to_json") else value


@dataclass(frozen=True)
class EventFilter:
    """Spec ``EventFilter``: which events (by type and sender) to return, and how many.

    ``None`` for an allow-list means "absent" (everything allowed); an empty tuple allows
    nothing. A ``not_*`` entry excludes an event even if the allow-list names it.
    """

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether ``event`` passes the type and sender rules.

        An event without a ``type`` or ``sender`` string fails a ``types``/``senders``
        allow-list but is never excluded by ``not_types``/``not_senders``.
        """
        ev_type = event.get("type")
        if any(_type_matches(ev_type, p) for p in self.not_types):
            return False
        if self.types is not None and not any(_type_matches(ev_type, p) for p in self.types):
            return False
        return _allowed(event.get("sender"), self.senders, self.not_senders)

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from their defaults, as the JSON object a client sends."""
        return _json_form(self)


@dataclass(frozen=True)
class RoomEventFilter(EventFilter):
    """Spec ``RoomEventFilter``: an ``EventFilter`` plus room, URL and lazy-loading rules."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Type/sender rules, then ``room_id`` (if the event carries one), then ``contains_url``.

        Events served per room (e.g. ephemeral events) often carry no ``room_id``; for
        those the room rules are skipped here and the caller applies :meth:`allows_room`.
        """
        if not super().matches(event):
            return False
        room_id = event.get("room_id")
        if room_id is not None and not self.allows_room(room_id):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def allows_room(self, room_id: str) -> bool:
        """Whether events of ``room_id`` may pass: ``not_rooms`` wins over ``rooms``."""
        return _allowed(room_id, self.rooms, self.not_rooms)


_ROOM_EVENT_FLAGS = (
    "lazy_load_members",
    "include_redundant_members",
    "unread_thread_notifications",
)
_ROOM_SUBFILTERS = ("timeline", "state", "ephemeral", "account_data")


@dataclass(frozen=True)
class RoomFilter:
    """Spec ``RoomFilter``: which rooms to include, and the per-section event filters."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = RoomEventFilter()
    state: RoomEventFilter = RoomEventFilter()
    ephemeral: RoomEventFilter = RoomEventFilter()
    account_data: RoomEventFilter = RoomEventFilter()

    def allows_room(self, room_id: str) -> bool:
        """Whether ``room_id`` appears at all: ``not_rooms`` wins over ``rooms``."""
        return _allowed(room_id, self.rooms, self.not_rooms)

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from their defaults, as the JSON object a client sends."""
        return _json_form(self)


@dataclass(frozen=True)
class Filter:
    """Spec ``Filter``: the whole filter a client uploads or passes inline to ``/sync``."""

    event_fields: tuple[str, ...] | None = None
    event_format: Literal["client", "federation"] = "client"
    presence: EventFilter = EventFilter()
    account_data: EventFilter = EventFilter()
    room: RoomFilter = RoomFilter()

    def timeline_limit(self, default: int = 10) -> int:
        """``room.timeline.limit`` if the client gave one, else ``default``."""
        limit = self.room.timeline.limit
        return default if limit is None else limit

    def to_json(self) -> dict[str, Any]:
        """Canonical JSON form (what ``GET /filter`` returns); ``parse_filter`` inverts it."""
        return _json_form(self)


# --- parsing -------------------------------------------------------------------------


def _is_text(value: str) -> bool:
    """False for strings with lone surrogates, which cannot be re-encoded as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_room_id(value: str) -> bool:
    # Lenient on purpose: room version 12 room IDs have no ":server" part.
    return len(value) > 1 and value.startswith("!")


def _is_user_id(value: str) -> bool:
    return _USER_ID_RE.fullmatch(value) is not None


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise bad_json(f"{where} must be a JSON object")
    return value


def _strings(
    obj: Mapping[str, object],
    key: str,
    where: str,
    check: Callable[[str], bool] | None = None,
    what: str = "a string",
) -> tuple[str, ...] | None:
    """``obj[key]`` as a tuple of strings, ``None`` if absent; each item must pass ``check``."""
    if key not in obj:
        return None
    value = obj[key]
    path = f"{where}.{key}" if where else key
    if not isinstance(value, list):
        raise bad_json(f"{path} must be a list")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _is_text(item) or (check and not check(item)):
            raise bad_json(f"{path}[{i}] must be {what}")
    return tuple(value)


def _bool(obj: Mapping[str, object], key: str, where: str) -> bool | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, bool):
        raise bad_json(f"{where}.{key} must be a boolean")
    return value


def _parse_event_filter_kwargs(obj: Mapping[str, object], where: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if "limit" in obj:
        limit = obj["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise bad_json(f"{where}.limit must be an integer")
        if not 1 <= limit <= _MAX_SAFE_INT:
            raise bad_json(f"{where}.limit must be between 1 and {_MAX_SAFE_INT}")
        kwargs["limit"] = limit
    kwargs["types"] = _strings(obj, "types", where)
    kwargs["not_types"] = _strings(obj, "not_types", where) or ()
    user = "a user ID (@localpart:server)"
    kwargs["senders"] = _strings(obj, "senders", where, _is_user_id, user)
    kwargs["not_senders"] = _strings(obj, "not_senders", where, _is_user_id, user) or ()
    return kwargs


def _room_lists(obj: Mapping[str, object], where: str) -> dict[str, Any]:
    room = "a room ID (!…)"
    return {
        "rooms": _strings(obj, "rooms", where, _is_room_id, room),
        "not_rooms": _strings(obj, "not_rooms", where, _is_room_id, room) or (),
    }


def _parse_event_filter(value: object, where: str) -> EventFilter:
    return EventFilter(**_parse_event_filter_kwargs(_object(value, where), where))


def _parse_room_event_filter(value: object, where: str) -> RoomEventFilter:
    obj = _object(value, where)
    kwargs = _parse_event_filter_kwargs(obj, where) | _room_lists(obj, where)
    kwargs["contains_url"] = _bool(obj, "contains_url", where)
    for key in _ROOM_EVENT_FLAGS:
        kwargs[key] = bool(_bool(obj, key, where))
    return RoomEventFilter(**kwargs)


def _parse_room_filter(value: object) -> RoomFilter:
    obj = _object(value, "room")
    kwargs = _room_lists(obj, "room")
    kwargs["include_leave"] = bool(_bool(obj, "include_leave", "room"))
    for key in _ROOM_SUBFILTERS:
        if key in obj:
            kwargs[key] = _parse_room_event_filter(obj[key], f"room.{key}")
    return RoomFilter(**kwargs)


def parse_filter(obj: object) -> Filter:
    """Validate a decoded filter and build a :class:`Filter`; bad shape -> 400 ``M_BAD_JSON``."""
    top = _object(obj, "filter")
    kwargs: dict[str, Any] = {"event_fields": _strings(top, "event_fields", "")}
    if "event_format" in top:
        fmt = top["event_format"]
        if fmt not in ("client", "federation"):
            raise bad_json("event_format must be 'client' or 'federation'")
        kwargs["event_format"] = fmt
    for key in ("presence", "account_data"):
        if key in top:
            kwargs[key] = _parse_event_filter(top[key], key)
    if "room" in top:
        kwargs["room"] = _parse_room_filter(top["room"])
    return Filter(**kwargs)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_filter(raw: str | bytes) -> object:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise bad_json("filter is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise not_json(f"filter is not valid JSON: {exc}") from None


def parse_filter_json(raw: str | bytes) -> Filter:
    """Parse filter JSON text (an upload body or an inline ``filter`` query parameter).

    Not JSON (including ``NaN``/``Infinity`` and undecodable bytes) -> 400 ``M_NOT_JSON``;
    JSON that is not a valid filter object -> 400 ``M_BAD_JSON``.
    """
    return parse_filter(_decode_filter(raw))


def parse_room_event_filter_json(raw: str | bytes) -> RoomEventFilter:
    """Parse a ``RoomEventFilter`` (the ``filter`` of ``/messages`` and ``/context``), with
    the same errors as :func:`parse_filter_json`."""
    return _parse_room_event_filter(_decode_filter(raw), "filter")


# --- event_fields --------------------------------------------------------------------


def _split_path(path: str) -> list[str]:
    r"""Split a dot-separated property path; ``\.`` and ``\\`` are escapes, other ``\x`` literal."""
    parts: list[str] = []
    current: list[str] = []
    for escaped, dot, text in _PATH_TOKEN_RE.findall(path):
        if dot:
            parts.append("".join(current))
            current = []
        else:
            current.append(escaped or text)
    parts.append("".join(current))
    return parts


def apply_event_fields(event: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    r"""A new event holding only the properties named by ``fields`` (spec ``event_fields``).

    Each entry is a dot-separated property path (``content.body``, ``content.m\.relates_to``).
    Paths that do not resolve are skipped; overlapping paths merge (``content`` together
    with ``content.body`` keeps all of ``content``). The result shares no mutable
    objects with ``event``.
    """
    out: dict[str, Any] = {}
    for path in fields:
        *parents, leaf = _split_path(path)
        src: Any = event
        for part in parents:
            src = src.get(part) if isinstance(src, dict) else None
        if not isinstance(src, dict) or leaf not in src:
            continue
        dst = out
        for part in parents:
            nxt = dst.get(part)
            if not isinstance(nxt, dict):
                nxt = dst[part] = {}
            dst = nxt
        dst[leaf] = copy.deepcopy(src[leaf])
    return out
