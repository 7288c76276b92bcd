"""Parsing a Simplified Sliding Sync request strictly (bad input is a 400, never a 500).

Both spellings clients send are accepted: the one matrix-rust-sdk and matrix-js-sdk send
today (``ranges``, ``is_invite``, ``pos``/``timeout`` as query parameters) and the one
merged into MSC4186 (``range``, ``is_invited``, ``pos``/``timeout`` in the body). The
query parameter wins when both are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import MatrixError, bad_json, invalid_param
from ..sync.request import MAX_TIMEOUT_MS, PRESENCE_STATES

#: The most lists, or room subscriptions, one request may carry.
MAX_LISTS = 100
#: The largest timeline a room may ask for.
MAX_TIMELINE_LIMIT = 1000
#: The most ranges one list may have.
MAX_RANGES = 100
EXTENSIONS = ("to_device", "e2ee", "account_data", "receipts", "typing")

LAZY = "$LAZY"
ME = "$ME"
WILDCARD = "*"


def unknown_pos(message: str = "Unknown or expired pos") -> MatrixError:
    """400 ``M_UNKNOWN_POS``: the client must start a new connection (no ``pos``)."""
    return MatrixError(400, "M_UNKNOWN_POS", message)


@dataclass(frozen=True, slots=True)
class RequiredState:
    """Which state events of a room to send: ``(type, state_key)`` pairs with ``*``
    wildcards, ``$LAZY`` (members of the timeline's senders) and ``$ME``."""

    pairs: frozenset[tuple[str, str]] = frozenset()

    def resolve(self, user_id: str) -> RequiredState:
        """``$ME`` replaced by ``user_id``."""
        return RequiredState(frozenset((t, user_id if k == ME else k) for t, k in self.pairs))

    def union(self, other: RequiredState) -> RequiredState:
        return RequiredState(self.pairs | other.pairs)

    @property
    def everything(self) -> bool:
        return (WILDCARD, WILDCARD) in self.pairs

    @property
    def lazy(self) -> bool:
        return ("m.room.member", LAZY) in self.pairs

    def all_members(self) -> bool:
        return self.everything or ("m.room.member", WILDCARD) in self.pairs

    def types(self) -> list[str] | None:
        """The event types to read (None: every type)."""
        if any(t == WILDCARD for t, _ in self.pairs):
            return None
        return sorted({t for t, _ in self.pairs})

    def members(self) -> list[str]:
        """The ``m.room.member`` state keys named explicitly (also by a ``*`` type)."""
        return sorted(
            k
            for t, k in self.pairs
            if t in ("m.room.member", WILDCARD) and k not in (LAZY, WILDCARD)
        )

    def matches(self, event_type: str, state_key: str) -> bool:
        """Whether the entry ``(event_type, state_key)`` is asked for (``$LAZY`` aside)."""
        pairs = self.pairs
        return (
            (event_type, state_key) in pairs
            or (event_type, WILDCARD) in pairs
            or (WILDCARD, state_key) in pairs
            or (WILDCARD, WILDCARD) in pairs
        )

    def to_json(self) -> list[list[str]]:
        return [list(p) for p in sorted(self.pairs)]


@dataclass(frozen=True, slots=True)
class RoomConfig:
    """What to send of a room: its required state and the timeline's length."""

    required_state: RequiredState = RequiredState()
    timeline_limit: int = 0

    def merge(self, other: RoomConfig) -> RoomConfig:
        """The config covering both (a room in several lists gets the largest)."""
        return RoomConfig(
            self.required_state.union(other.required_state),
            max(self.timeline_limit, other.timeline_limit),
        )


@dataclass(frozen=True, slots=True)
class ListFilters:
    """``filters`` of a list; None means "not filtered on"."""

    is_dm: bool | None = None
    spaces: tuple[str, ...] | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] = ()
    tags: tuple[str, ...] | None = None
    not_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One named list: its windows over the sorted, filtered rooms, and what to send."""

    ranges: tuple[tuple[int, int], ...]
    room: RoomConfig
    filters: ListFilters = ListFilters()


@dataclass(frozen=True, slots=True)
class ExtensionRequest:
    """One extension: enabled, and which lists/rooms it covers (None: those of the
    response)."""

    enabled: bool = False
    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None
    #: to_device only: the ``next_batch`` the client got last (acknowledges up to it).
    since: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SlidingRequest:
    """A parsed sliding sync request."""

    conn_id: str = ""
    pos: int | None = None
    timeout_ms: int = 0
    set_presence: str = "online"
    txn_id: str | None = None
    lists: dict[str, ListRequest] = field(default_factory=dict)
    subscriptions: dict[str, RoomConfig] = field(default_factory=dict)
    unsubscribe: tuple[str, ...] = ()
    extensions: dict[str, ExtensionRequest] = field(default_factory=dict)

    def extension(self, name: str) -> ExtensionRequest | None:
        ext = self.extensions.get(name)
        return ext if ext is not None and ext.enabled else None


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_json(f"{where} must be an object")
    return value


def _str(value: object, where: str, limit: int = 255) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise bad_json(f"{where} must be a string of at most {limit} characters")
    return value


def _strs(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > 1000:
        raise bad_json(f"{where} must be a list of strings")
    return tuple(_str(v, where) for v in value)


def _opt_bool(obj: Mapping[str, Any], where: str, *names: str) -> bool | None:
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise bad_json(f"{where}.{name} must be a boolean")
        return value
    return None


def _int(value: object, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_json(f"{where} must be an integer from {low} to {high}")
    return value


def _required_state(value: object, where: str) -> RequiredState:
    if value is None:
        return RequiredState()
    if isinstance(value, dict):
        # The merged proposal's shape: {"include": [{"type", "state_key"}], "lazy_members"}.
        pairs: set[tuple[str, str]] = set()
        for entry in value.get("include") or []:
            e = _obj(entry, f"{where}.include[]")
            pairs.add(
                (
                    _str(e.get("type", WILDCARD), f"{where}.include[].type"),
                    _str(e.get("state_key", WILDCARD), f"{where}.include[].state_key"),
                )
            )
        if _opt_bool(value, where, "lazy_members"):
            pairs.add(("m.room.member", LAZY))
        return RequiredState(frozenset(pairs))
    if not isinstance(value, list) or len(value) > 1000:
        raise bad_json(f"{where} must be a list of [type, state_key] pairs")
    out = set()
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(x, str) and len(x) <= 255 for x in entry)
        ):
            raise bad_json(f"{where} entries must be [type, state_key] pairs of strings")
        out.add((entry[0], entry[1]))
    return RequiredState(frozenset(out))


def _room_config(obj: Mapping[str, Any], where: str) -> RoomConfig:
    limit = obj.get("timeline_limit", 0)
    return RoomConfig(
        _required_state(obj.get("required_state"), f"{where}.required_state"),
        _int(limit, f"{where}.timeline_limit", 0, MAX_TIMELINE_LIMIT),
    )


def _ranges(obj: Mapping[str, Any], where: str) -> tuple[tuple[int, int], ...]:
    if "range" in obj and obj["range"] is not None:
        raw: object = [obj["range"]]
    else:
        raw = obj.get("ranges") or []
    if not isinstance(raw, list) or len(raw) > MAX_RANGES:
        raise bad_json(f"{where}.ranges must be a list of at most {MAX_RANGES} [start, end]")
    out = []
    for r in raw:
        if not isinstance(r, list) or len(r) != 2:
            raise bad_json(f"{where}.ranges entries must be [start, end]")
        start = _int(r[0], f"{where}.ranges start", 0, 1 << 31)
        end = _int(r[1], f"{where}.ranges end", 0, 1 << 31)
        if end < start:
            raise bad_json(f"{where}.ranges: end {end} is before start {start}")
        out.append((start, end))
    return tuple(out)


def _room_types(value: object, where: str) -> tuple[str | None, ...]:
    if not isinstance(value, list) or len(value) > 100:
        raise bad_json(f"{where} must be a list of room types (strings or null)")
    for v in value:
        if v is not None and not isinstance(v, str):
            raise bad_json(f"{where} must be a list of room types (strings or null)")
    return tuple(value)


def _filters(value: object, where: str) -> ListFilters:
    obj = _obj(value, where)
    spaces = obj.get("spaces")
    room_types = obj.get("room_types")
    tags = obj.get("tags")
    return ListFilters(
        is_dm=_opt_bool(obj, where, "is_dm"),
        spaces=None if spaces is None else _strs(spaces, f"{where}.spaces"),
        is_encrypted=_opt_bool(obj, where, "is_encrypted"),
        is_invite=_opt_bool(obj, where, "is_invite", "is_invited"),
        room_types=None if room_types is None else _room_types(room_types, f"{where}.room_types"),
        not_room_types=_room_types(obj.get("not_room_types") or [], f"{where}.not_room_types"),
        tags=None if tags is None else _strs(tags, f"{where}.tags"),
        not_tags=_strs(obj.get("not_tags") or [], f"{where}.not_tags"),
    )


def _extension(name: str, value: object) -> ExtensionRequest:
    where = f"extensions.{name}"
    obj = _obj(value, where)
    enabled = _opt_bool(obj, where, "enabled")
    lists = obj.get("lists")
    rooms = obj.get("rooms")
    since = obj.get("since")
    if since is not None:
        text = _str(since, f"{where}.since", 20)
        if not (text.isascii() and text.isdigit()):
            raise bad_json(f"{where}.since must be a next_batch this server gave")
        since = int(text)
    limit = _int(obj.get("limit", 100), f"{where}.limit", 1, 1000)
    return ExtensionRequest(
        enabled=bool(enabled),
        lists=None if lists is None else _strs(lists, f"{where}.lists"),
        rooms=None if rooms is None else _strs(rooms, f"{where}.rooms"),
        since=since,
        limit=limit,
    )


def _pos(value: object) -> int:
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise unknown_pos(f"Unknown pos {str(value)[:40]!r}")
    return int(text)


def _timeout(value: object) -> int:
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 12:
            raise invalid_param("timeout must be a non-negative integer (milliseconds)")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_param("timeout must be a non-negative integer (milliseconds)")
    return min(value, MAX_TIMEOUT_MS)


def parse_sliding_request(args: Mapping[str, str], body: object) -> SlidingRequest:
    """Build a :class:`SlidingRequest` from query parameters and the JSON body."""
    obj = _obj(body, "body")
    conn_id = obj.get("conn_id")
    conn_id = "" if conn_id is None else _str(conn_id, "conn_id")
    txn_id = obj.get("txn_id")
    pos_value = args.get("pos", obj.get("pos"))
    timeout_value = args.get("timeout", obj.get("timeout", 0))
    presence = args.get("set_presence", obj.get("set_presence", "online"))
    if presence not in PRESENCE_STATES:
        raise invalid_param("set_presence must be one of online, offline, unavailable")
    lists_obj = _obj(obj.get("lists"), "lists")
    subs_obj = _obj(obj.get("room_subscriptions"), "room_subscriptions")
    if len(lists_obj) > MAX_LISTS:
        raise bad_json(f"at most {MAX_LISTS} lists")
    if len(subs_obj) > MAX_LISTS:
        raise bad_json(f"at most {MAX_LISTS} room subscriptions")
    lists = {}
    for name, value in lists_obj.items():
        where = f"lists.{name[:40]}"
        _str(name, "list name", 64)
        lst = _obj(value, where)
        lists[name] = ListRequest(
            _ranges(lst, where), _room_config(lst, where), _filters(lst.get("filters"), where)
        )
    subscriptions = {}
    for room_id, value in subs_obj.items():
        if not room_id.startswith("!") or len(room_id) > 255:
            raise bad_json(f"room_subscriptions: not a room ID: {room_id[:80]!r}")
        subscriptions[room_id] = _room_config(
            _obj(value, "room_subscriptions"), "room_subscriptions"
        )
    ext_obj = _obj(obj.get("extensions"), "extensions")
    extensions = {name: _extension(name, ext_obj[name]) for name in EXTENSIONS if name in ext_obj}
    return SlidingRequest(
        conn_id=conn_id,
        pos=None if pos_value in (None, "") else _pos(pos_value),
        timeout_ms=_timeout(timeout_value),
        set_presence=presence,
        txn_id=None if txn_id is None else _str(txn_id, "txn_id"),
        lists=lists,
        subscriptions=subscriptions,
        unsubscribe=_strs(obj.get("unsubscribe_rooms") or [], "unsubscribe_rooms"),
        extensions=extensions,
    )
