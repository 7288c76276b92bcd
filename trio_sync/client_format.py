"""The spec's client event format: which ``unsigned`` keys a client event may carry.

The room server's PDUs carry federation fields in ``unsigned`` (``age_ts``,
``invite_room_state``, ``knock_room_state``, ``prev_sender`` ...). None of them is part of
a client event: ingest keeps only :data:`STORED_UNSIGNED` in the stored client-format
bytes, and serving adds the per-request keys (``age``, ``membership``,
``transaction_id``, ``m.relations``). Stripped state lives apart (the ``invites`` table;
the knock event's PDU) and is served only in ``invite_state`` / ``knock_state``.
"""

from __future__ import annotations

from typing import Any

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
