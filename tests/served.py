"""How a stored client event is served, worked out the long way: parsed, completed with
the viewer's ``unsigned`` keys, cut to ``event_fields`` and dumped. ``Viewer.serve`` must
give the same JSON object (and, for events stored by orjson, the same text)."""

from __future__ import annotations

from typing import Any

import orjson

from trio_sync.filters import apply_event_fields
from trio_sync.storage.rooms import TimelineEvent
from trio_sync.storage.visibility import RoomAccess
from trio_sync.sync.timeline import Viewer


def reference_serve(
    viewer: Viewer,
    ev: TimelineEvent,
    access: RoomAccess | None,
    relations: dict[str, Any] | None = None,
) -> str:
    """``ev`` in the client format as ``viewer`` gets it, by parse and dump."""
    event: dict[str, Any] = orjson.loads(ev.json)
    unsigned = event.get("unsigned")
    if not isinstance(unsigned, dict):
        unsigned = event["unsigned"] = {}
    if viewer.now_ms:
        unsigned["age"] = max(0, viewer.now_ms - ev.origin_server_ts)
    if access is not None:
        unsigned["membership"] = access.unsigned_membership(ev.pos, ev.type, ev.state_key)
    if (
        ev.txn_id is not None
        and ev.sender == viewer.user_id
        and viewer.session_id is not None
        and ev.txn_session == viewer.session_id
    ):
        unsigned["transaction_id"] = ev.txn_id
    if relations:
        unsigned["m.relations"] = relations
    if viewer.fields is not None:
        event = apply_event_fields(event, viewer.fields)
    return orjson.dumps(event).decode()
