"""The Matrix event redaction algorithm, for room versions 1 to 12.

Redacting an event strips every property that is not needed to authorise it,
keeping only the protected top-level keys and, for a few state event types,
the protected keys of ``content``. The rules live in the room version
specification (``/rooms/v<N>#redactions``); they changed in four versions:

====================  ===========================================================
Room versions         Rules
====================  ===========================================================
1 - 5                 Base rules. ``m.room.aliases`` keeps ``aliases``.
6 - 7                 ``m.room.aliases`` keeps nothing.
8                     ``m.room.join_rules`` also keeps ``allow``.
9 - 10                ``m.room.member`` also keeps
                      ``join_authorised_via_users_server``.
11 - 12               Top level no longer keeps ``origin``, ``membership`` and
                      ``prev_state``; ``m.room.create`` keeps all of ``content``;
                      ``m.room.power_levels`` also keeps ``invite``;
                      ``m.room.member`` also keeps ``third_party_invite.signed``;
                      ``m.room.redaction`` keeps ``redacts``.
====================  ===========================================================

Protected top-level keys in versions 1 to 10: ``event_id``, ``type``, ``room_id``,
``sender``, ``state_key``, ``content``, ``hashes``, ``signatures``, ``depth``,
``prev_events``, ``prev_state``, ``auth_events``, ``origin``,
``origin_server_ts``, ``membership``. Version 11 onwards drops ``origin``,
``membership`` and ``prev_state`` from that list. Everything else, including
``unsigned`` and the top-level ``redacts`` of ``m.room.redaction`` events, is
removed.

Protected ``content`` keys by event type:

* ``m.room.member``: ``membership``; ``join_authorised_via_users_server`` from
  v9; from v11 also ``third_party_invite``, reduced to its ``signed`` key.
* ``m.room.create``: ``creator`` in v1 to v10; the whole ``content`` from v11.
* ``m.room.join_rules``: ``join_rule``; ``allow`` from v8.
* ``m.room.power_levels``: ``ban``, ``events``, ``events_default``, ``kick``,
  ``redact``, ``state_default``, ``users``, ``users_default``; ``invite`` from
  v11.
* ``m.room.aliases``: ``aliases`` in v1 to v5 only.
* ``m.room.history_visibility``: ``history_visibility``.
* ``m.room.redaction``: ``redacts`` from v11.

Unknown room versions. Reference homeservers refuse to process events of a
room version they do not know, but this module has to return something, and
returning the unredacted event would leak the content the sender asked to
remove. For a room version string outside :data:`KNOWN_ROOM_VERSIONS` the
rules used are therefore the intersection of all known rule sets: a key is
kept only if every known room version keeps it. The result never contains
more than any known version would keep: the v11 top-level list, ``membership``
for members, ``creator`` for create events, ``join_rule`` for join rules, the
v1 power level keys (no ``invite``) and ``history_visibility``; ``aliases``,
``allow``, ``join_authorised_via_users_server``, ``third_party_invite`` and
``redacts`` are all removed. Callers that need to tell the two cases apart can
check :data:`KNOWN_ROOM_VERSIONS` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["KNOWN_ROOM_VERSIONS", "redact", "redact_for_client"]

_MEMBER = "m.room.member"
_CREATE = "m.room.create"
_JOIN_RULES = "m.room.join_rules"
_POWER_LEVELS = "m.room.power_levels"
_ALIASES = "m.room.aliases"
_HISTORY_VISIBILITY = "m.room.history_visibility"
_REDACTION = "m.room.redaction"


@dataclass(frozen=True, slots=True)
class _RedactionRules:
    """One version of the redaction algorithm."""

    top_level: frozenset[str]
    """Top-level keys kept (``content`` is always rebuilt separately)."""
    content: Mapping[str, frozenset[str]]
    """Event type -> ``content`` keys kept; types not listed keep nothing."""
    keep_all_create_content: bool
    """``m.room.create`` keeps its whole ``content``."""
    keep_third_party_invite_signed: bool
    """``m.room.member`` keeps ``third_party_invite``, reduced to ``signed``."""


_TOP_LEVEL_V11 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
_TOP_LEVEL_V1 = _TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}

_POWER_LEVEL_KEYS_V1 = frozenset(
    {
        "ban",
        "events",
        "events_default",
        "kick",
        "redact",
        "state_default",
        "users",
        "users_default",
    }
)


def _content_rules(rules: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType(dict(rules))


_CONTENT_V6: dict[str, frozenset[str]] = {
    _MEMBER: frozenset({"membership"}),
    _CREATE: frozenset({"creator"}),
    _JOIN_RULES: frozenset({"join_rule"}),
    _POWER_LEVELS: _POWER_LEVEL_KEYS_V1,
    _HISTORY_VISIBILITY: frozenset({"history_visibility"}),
}
_CONTENT_V1 = {**_CONTENT_V6, _ALIASES: frozenset({"aliases"})}
_CONTENT_V8 = {**_CONTENT_V6, _JOIN_RULES: frozenset({"join_rule", "allow"})}
_CONTENT_V9 = {
    **_CONTENT_V8,
    _MEMBER: frozenset({"membership", "join_authorised_via_users_server"}),
}
_CONTENT_V11 = {
    **_CONTENT_V9,
    # The create entry is superseded by keep_all_create_content.
    _POWER_LEVELS: _POWER_LEVEL_KEYS_V1 | {"invite"},
    _REDACTION: frozenset({"redacts"}),
}

_RULES_V1 = _RedactionRules(_TOP_LEVEL_V1, _content_rules(_CONTENT_V1), False, False)
_RULES_V6 = _RedactionRules(_TOP_LEVEL_V1, _content_rules(_CONTENT_V6), False, False)
_RULES_V8 = _RedactionRules(_TOP_LEVEL_V1, _content_rules(_CONTENT_V8), False, False)
_RULES_V9 = _RedactionRules(_TOP_LEVEL_V1, _content_rules(_CONTENT_V9), False, False)
_RULES_V11 = _RedactionRules(_TOP_LEVEL_V11, _content_rules(_CONTENT_V11), True, True)

# Keeps only what every known version keeps (see the module docstring).
_RULES_UNKNOWN = _RedactionRules(_TOP_LEVEL_V11, _content_rules(_CONTENT_V6), False, False)

_RULES_BY_VERSION: Mapping[str, _RedactionRules] = MappingProxyType(
    {
        "1": _RULES_V1,
        "2": _RULES_V1,
        "3": _RULES_V1,
        "4": _RULES_V1,
        "5": _RULES_V1,
        "6": _RULES_V6,
        "7": _RULES_V6,
        "8": _RULES_V8,
        "9": _RULES_V9,
        "10": _RULES_V9,
        "11": _RULES_V11,
        "12": _RULES_V11,
    }
)

KNOWN_ROOM_VERSIONS: frozenset[str] = frozenset(_RULES_BY_VERSION)
"""Room version identifiers whose redaction rules are implemented exactly."""


def _json_copy(value: Any) -> Any:
    """Copy a JSON-like value so the result shares no mutable parts with it."""
    if isinstance(value, Mapping):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    return value


def _redact_content(event_type: Any, content: Any, rules: _RedactionRules) -> dict[str, Any]:
    """The redacted ``content`` for an event of ``event_type``."""
    if not isinstance(content, Mapping) or not isinstance(event_type, str):
        return {}
    if event_type == _CREATE and rules.keep_all_create_content:
        copied: dict[str, Any] = _json_copy(content)
        return copied

    allowed = rules.content.get(event_type, frozenset())
    redacted = {key: _json_copy(value) for key, value in content.items() if key in allowed}

    if event_type == _MEMBER and rules.keep_third_party_invite_signed:
        invite = content.get("third_party_invite")
        if isinstance(invite, Mapping):
            kept: dict[str, Any] = {}
            if "signed" in invite:
                kept["signed"] = _json_copy(invite["signed"])
            redacted["third_party_invite"] = kept
    return redacted


def redact(event: Mapping[str, Any], room_version: str) -> dict[str, Any]:
    """Return the redacted copy of a (federation-format or client-format) event dict.

    Keeps the protected top-level keys of ``room_version`` that are present in
    ``event`` and replaces ``content`` with an object holding only the protected
    content keys for the event's type (``{}`` for most types, and also when
    ``content`` is missing or not an object). ``unsigned`` is dropped.

    The input is never mutated and the result shares no mutable objects with
    it. Room versions outside :data:`KNOWN_ROOM_VERSIONS` get the most
    restrictive rules: only what every known version keeps survives.
    """
    rules = _RULES_BY_VERSION.get(room_version, _RULES_UNKNOWN)
    redacted: dict[str, Any] = {}
    for key, value in event.items():
        if key == "content":
            redacted[key] = _redact_content(event.get("type"), value, rules)
        elif key in rules.top_level:
            redacted[key] = _json_copy(value)
    if "content" not in redacted:
        redacted["content"] = {}
    return redacted


def redact_for_client(
    event: Mapping[str, Any], room_version: str, redacted_because: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the redacted event as served to clients.

    This is :func:`redact` followed by setting ``unsigned`` to exactly
    ``{"redacted_because": redacted_because}`` (a copy of it); nothing from the
    original ``unsigned`` (``age``, ``transaction_id``, ``prev_content``, ...)
    survives. It does not convert a federation-format event to client format:
    federation-only keys that are protected (``hashes``, ``signatures``,
    ``depth``, ...) stay if they were present, so pass a client-format event to
    get a client-format result.
    """
    redacted = redact(event, room_version)
    redacted["unsigned"] = {"redacted_because": _json_copy(redacted_because)}
    return redacted
