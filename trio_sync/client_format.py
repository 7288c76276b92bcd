"""The spec's client event format: which ``unsigned`` keys a client event may carry.

Events inside ``/sync`` are the spec's ``ClientEventWithoutRoomID`` (the room is the key
they sit under); the read endpoints serve them with ``room_id``. Ingest stores each
client event with ``room_id`` as its first key, so :func:`without_room_id` is a slice,
not a parse.

The room server's PDUs carry federation fields in ``unsigned`` (``age_ts``,
``invite_room_state``, ``knock_room_state``, ``prev_sender`` ...). None of them is part of
a client event: ingest keeps only :data:`STORED_UNSIGNED` in the stored client-format
bytes, and serving adds the per-request keys (``age``, ``membership``,
``transaction_id``, ``m.relations``): to an event stored without ``unsigned`` (most
events) by :func:`with_unsigned`, a splice of the text, not a parse. Stripped state lives
apart (the ``invites`` table; the knock event's PDU) and is served only in
``invite_state`` / ``knock_state``.
"""

from __future__ import annotations

from typing import Any

import orjson

#: Every ``unsigned`` key the spec defines for a client event.
CLIENT_UNSIGNED = frozenset(
    {
        "age",
        "prev_content",
        "replaces_state",
        "redacted_because",
        "transaction_id",
        "membership",
        "m.relations",
    }
)
#: The keys that are the same for every viewer and so are stored with the event.
STORED_UNSIGNED = ("prev_content", "replaces_state", "redacted_because")


def stored_unsigned(unsigned: dict[str, Any]) -> dict[str, Any]:
    """The part of ``unsigned`` kept in the stored client-format event."""
    return {k: unsigned[k] for k in STORED_UNSIGNED if k in unsigned}


def room_id_prefix(room_id: str) -> str:
    """How a stored client event of ``room_id`` begins (see :func:`without_room_id`)."""
    return '{"room_id":' + orjson.dumps(room_id).decode() + ","


def without_room_id(event_json: str, prefix: str) -> str:
    """``event_json`` without its ``room_id``, given :func:`room_id_prefix` of its room.

    Events as ingest stores them (and as serving re-dumps them) start with the prefix and
    are sliced; any other layout (events trimmed by a migration on PostgreSQL, which
    reorders keys) is parsed and dumped again.
    """
    if event_json.startswith(prefix):
        return "{" + event_json[len(prefix) :]
    event = orjson.loads(event_json)
    if isinstance(event, dict):
        event.pop("room_id", None)
    return orjson.dumps(event).decode()


#: How a key named ``unsigned`` is written in stored JSON text: orjson (ingest) and the JSON
#: functions of SQLite and PostgreSQL (migration 21) never escape a letter.
_UNSIGNED_KEY = '"unsigned"'


def with_unsigned(event_json: str, unsigned_json: str) -> str | None:
    """``event_json`` (a stored event: a JSON object) with ``unsigned_json`` (a JSON
    object's text) appended as its last key, ``unsigned``; or None when that cannot be
    decided without parsing, for the caller to parse and dump instead.

    The text is spliced when ``"unsigned"`` occurs nowhere in it (so the event certainly
    has no ``unsigned`` key; when it occurs, in a stored ``unsigned`` or inside
    ``content``, the answer is None), it starts with ``{"`` (the object has a key for the
    new one to follow) and ends with ``}`` (no trailing whitespace). Events stored by
    ingest (orjson) and by migration 21 (``jsonb`` text on PostgreSQL, with spaces) are
    laid out so. The result is the same JSON object the parse would give; for orjson's
    layout, the same text.
    """
    if event_json.startswith('{"') and event_json.endswith("}") and _UNSIGNED_KEY not in event_json:
        return f'{event_json[:-1]},"unsigned":{unsigned_json}}}'
    return None
