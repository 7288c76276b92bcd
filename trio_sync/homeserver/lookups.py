"""What the homeserver's streams name but do not carry, read from its own tables.

Dendrite's output streams leave three things out, which its own sync API reads from the
user API's and room server's tables; trio-sync reads the same tables (read only):

* account data content (``OutputClientData`` carries only the room and type):
  ``userapi_account_datas (localpart, server_name, room_id, type, content)``;
* state events named only by ID (``adds_state_event_ids`` of events never sent on the
  stream, such as the state received when joining over federation):
  ``roomserver_events`` (``event_id`` → ``event_nid``, ``room_nid``),
  ``roomserver_event_json`` (``event_nid`` → the PDU JSON, without ``event_id``) and
  ``roomserver_rooms`` (``room_nid`` → ``room_version``);
* a device's one-time-key counts and unused fallback key types (``/sync``'s
  ``device_one_time_keys_count`` and ``device_unused_fallback_key_types``):
  ``keyserver_one_time_keys`` and ``keyserver_fallback_keys`` (``used`` false).

Events are immutable, so events found by ID are cached (a bounded LRU). Account data and
key counts change, so they are read each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ..storage import Array, Conn, Engine
from ..storage.accounts import Device
from ..sync.response import KeyCounts

#: Synapse and Dendrite always report this algorithm, so clients can tell "none left".
SIGNED_CURVE25519 = "signed_curve25519"


def split_user_id(user_id: str) -> tuple[str, str]:
    """``@alice:example.org`` → (``alice``, ``example.org``), as Dendrite keys its users."""
    localpart, _, server_name = user_id[1:].partition(":")
    return localpart, server_name


async def account_data_content(
    conn: Conn, user_id: str, room_id: str, data_type: str
) -> dict[str, Any] | None:
    """The stored content of one account data key (``room_id`` "" for global), or None."""
    localpart, server_name = split_user_id(user_id)
    raw = await conn.fetchval(
        "SELECT content FROM userapi_account_datas WHERE localpart = $1 AND server_name = $2 "
        "AND room_id = $3 AND type = $4",
        localpart,
        server_name,
        room_id,
        data_type,
    )
    if raw is None:
        return None
    content = orjson.loads(raw)
    return content if isinstance(content, dict) else None


async def events_by_id(conn: Conn, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The room server's events among ``event_ids``, as headered events (the PDU plus
    ``_event_id`` and ``_room_version``). Rejected events are left out."""
    rows = await conn.fetch(
        "SELECT e.event_id, j.event_json, r.room_version FROM roomserver_events e "
        "JOIN roomserver_event_json j ON j.event_nid = e.event_nid "
        "JOIN roomserver_rooms r ON r.room_nid = e.room_nid "
        "WHERE e.event_id = ANY($1) AND NOT e.is_rejected",
        Array(list(event_ids)),
    )
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        event = orjson.loads(row[1])
        if isinstance(event, dict):
            found[str(row[0])] = {**event, "_event_id": row[0], "_room_version": row[2]}
    return found


async def device_key_counts(conn: Conn, user_id: str, device_id: str) -> KeyCounts:
    """The device's unclaimed one-time keys per algorithm (``signed_curve25519`` always
    present) and its unused fallback key algorithms, in one statement."""
    rows = await conn.fetch(
        "SELECT 'otk', algorithm, COUNT(*) FROM keyserver_one_time_keys "
        "WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm "
        "UNION ALL SELECT 'fallback', algorithm, 0 FROM keyserver_fallback_keys "
        "WHERE user_id = $1 AND device_id = $2 AND NOT used",
        user_id,
        device_id,
    )
    counts = {SIGNED_CURVE25519: 0}
    fallback: list[str] = []
    for row in rows:
        if row[0] == "otk":
            counts[str(row[1])] = int(row[2])
        else:
            fallback.append(str(row[1]))
    return counts, sorted(fallback)


async def stored_event_ids(conn: Conn, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` trio-sync's own store already holds."""
    rows = await conn.fetch(
        "SELECT event_id FROM events WHERE event_id = ANY($1)", Array(list(event_ids))
    )
    return {r[0] for r in rows}


class HomeserverLookups:
    """The lookups above over the homeserver database ``homeserver`` (and trio-sync's own
    store ``own``, to know which named events it already holds)."""

    def __init__(self, homeserver: Engine, own: Engine, cache_size: int = 10_000) -> None:
        self._homeserver = homeserver
        self._own = own
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    async def account_data(self, user_id: str, room_id: str, data_type: str) -> object:
        """Account data content, or None when the homeserver has none stored."""
        return await self._homeserver.read_one(account_data_content, user_id, room_id, data_type)

    async def key_counts(self, device: Device) -> KeyCounts:
        return await self._homeserver.read_one(device_key_counts, device.user_id, device.device_id)

    async def events(self, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Headered events by ID, from the cache or the room server's tables."""
        wanted = list(dict.fromkeys(event_ids))
        found = {i: self._events[i] for i in wanted if i in self._events}
        missing = [i for i in wanted if i not in found]
        if missing:
            fetched = await self._homeserver.read_one(events_by_id, missing)
            for event_id, event in fetched.items():
                self._events[event_id] = event
                if len(self._events) > self._cache_size:
                    self._events.popitem(last=False)
            found.update(fetched)
        for event_id in found:
            self._events.move_to_end(event_id)
        return found

    async def complete_state(self, messages: list[dict[str, Any]]) -> None:
        """Add to each ``new_room_event`` of ``messages`` (in place, as
        ``AddStateEvents``) the bodies of the state events it names in
        ``adds_state_event_ids`` that neither an earlier message of the batch, nor the
        message itself, nor trio-sync's store holds. Events the homeserver does not have
        either are left for ingest to reject."""
        seen: set[str] = set()
        named: list[tuple[dict[str, Any], list[str]]] = []
        for message in messages:
            body = message.get(message.get("type", ""))
            if not isinstance(body, dict):
                continue
            event = body.get("event")
            if message.get("type") == "new_room_event":
                ids = body.get("adds_state_event_ids")
                supplied = body.get("AddStateEvents") or []
                carried = {e.get("_event_id") for e in supplied if isinstance(e, dict)}
                if isinstance(ids, list):
                    wanted = [
                        i for i in ids if isinstance(i, str) and i not in seen and i not in carried
                    ]
                    if wanted:
                        named.append((body, wanted))
            if isinstance(event, dict) and isinstance(event.get("_event_id"), str):
                seen.add(event["_event_id"])
        if not named:
            return
        everything = sorted({i for _, ids in named for i in ids})
        held = await self._own.read_one(stored_event_ids, everything)
        missing = [i for i in everything if i not in held]
        if not missing:
            return
        found = await self.events(missing)
        for body, ids in named:
            # Each event travels once, with the first message naming it.
            extra = [found.pop(i) for i in ids if i in found]
            if extra:
                body["AddStateEvents"] = [*(body.get("AddStateEvents") or []), *extra]
