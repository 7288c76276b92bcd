"""Which rooms a user's lists hold, in which order, and what falls in their windows.

The candidates are every room the user is joined to, invited to or knocking on at the
response's PDU position, plus rooms it left or was banned from after the position the
request builds on (so the client learns of the leave). They are sorted by their last
*bump* — the newest event of a bump type (:data:`BUMP_TYPES`), or the user's own
membership event, whichever is later — newest first. A left room's bump is its leave.

The newest event and newest bump of every room are kept in :class:`Recency`, one cache
for the process: it is brought up to date by one range scan of the events committed since
it was last read, so ordering 1,000 rooms costs no per-room query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from ..storage import Array, Conn, Row
from ..storage import rooms as q
from .request import ListFilters, ListRequest

BUMP_TYPES = (
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
    "m.beacon",
)
#: Above this many new events since the cache was read, reload the rooms asked for
#: instead of scanning the range.
SCAN_MAX = 5000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A room that may appear in a list."""

    room_id: str
    membership: str
    #: The PDU position of the user's membership event; for an invite that came from
    #: another server without a room event here, the newest PDU position when it arrived
    #: (0 for such invites stored before that was recorded).
    since: int
    event_id: str
    #: The invite event (client JSON, with ``unsigned.invite_room_state``) of an invite.
    invite_json: str | None = None
    #: For an invite from another server, its invite stream position: it arrived after
    #: the event at ``since``, and after invites with a lower one.
    arrived: int = 0


async def memberships(
    conn: Conn, user_id: str, upto: int, invites_upto: int
) -> dict[str, Candidate]:
    """Every membership the user has at ``upto`` (left and banned rooms too), with the
    active invites of the invite stream (up to ``invites_upto``) folded in."""
    out: dict[str, Candidate] = {}
    for room_id, m in (await q.memberships_at(conn, user_id, upto)).items():
        out[room_id] = Candidate(room_id, m.membership, m.since, m.event_id)
    rows = await conn.fetch(
        "SELECT room_id, event_id, event_json, pos, pdu_at FROM invites WHERE user_id = $1 "
        "AND pos <= $2 "
        "AND (retired_at IS NULL OR retired_at > $2) ORDER BY pos",
        user_id,
        invites_upto,
    )
    for row in rows:
        room_id = str(row[0])
        known = out.get(room_id)
        if (
            known is None
            or known.membership in ("leave", "ban")
            or (known.membership == "invite" and known.event_id == row[1])
        ):
            if known is not None and known.membership == "invite":
                out[room_id] = Candidate(room_id, "invite", known.since, str(row[1]), str(row[2]))
            else:
                since = int(row[4]) if row[4] is not None else 0
                out[room_id] = Candidate(
                    room_id, "invite", since, str(row[1]), str(row[2]), int(row[3])
                )
    return out


def candidates(every: Mapping[str, Candidate], left_after: int | None) -> dict[str, Candidate]:
    """Rooms the user is joined to, invited to or knocking on; with ``left_after``, also
    those it left (or was banned from) at ``p > left_after``."""
    return {
        r: c
        for r, c in every.items()
        if c.membership in ("join", "invite", "knock")
        or (left_after is not None and c.since > left_after)
    }


@dataclass(slots=True)
class Recency:
    """Per room: the position of its newest syncable event and of its newest bump event,
    as of :attr:`as_of`. Only rooms some request asked about are kept."""

    latest: dict[str, int] = field(default_factory=dict)
    bump: dict[str, int] = field(default_factory=dict)
    as_of: int = 0

    def merge(self, update: RecencyUpdate) -> None:
        """Fold in what a read found (positions only grow, so order does not matter).

        A read that had to load its rooms whole (the cache was too far behind) replaces
        the cache, unless the cache has moved past it meanwhile."""
        if update.reset:
            if update.upto < self.as_of:
                return
            self.latest, self.bump, self.as_of = {}, {}, update.upto
        for table, values in ((self.latest, update.latest), (self.bump, update.bump)):
            for room_id, pos in values.items():
                if pos > table.get(room_id, 0):
                    table[room_id] = pos
        for room_id in update.loaded:
            self.latest.setdefault(room_id, 0)
            self.bump.setdefault(room_id, 0)
        if update.scanned_from <= self.as_of < update.upto:
            self.as_of = update.upto


@dataclass(slots=True)
class RecencyUpdate:
    """What one read learnt: newest positions of some rooms, up to ``upto``."""

    upto: int
    scanned_from: int
    latest: dict[str, int] = field(default_factory=dict)
    bump: dict[str, int] = field(default_factory=dict)
    #: Rooms read whole (known even when they have no event yet).
    loaded: list[str] = field(default_factory=list)
    #: Nothing was scanned: the rooms read whole are all that is known at ``upto``.
    reset: bool = False


_BUMP_CASE = "CASE WHEN type = ANY($3) THEN pos END"


async def read_recency(
    conn: Conn, known: Recency, as_of: int, room_ids: Sequence[str], upto: int
) -> RecencyUpdate:
    """Newest event and bump positions for ``room_ids`` at ``p <= upto``: the events after
    ``as_of`` (the cache's position when the request started) by one range scan, and
    rooms the cache does not know by one grouped query."""
    update = RecencyUpdate(upto, as_of)
    missing = [r for r in room_ids if r not in known.latest]
    if upto - as_of > SCAN_MAX or as_of > upto:
        missing = list(room_ids)
        update.reset = True
    elif upto > as_of:
        rows = await conn.fetch(
            f"SELECT room_id, MAX(pos), MAX({_BUMP_CASE}) FROM events "
            "WHERE pos > $1 AND pos <= $2 AND exclude_from_sync = 0 GROUP BY room_id",
            as_of,
            upto,
            Array(list(BUMP_TYPES)),
        )
        _fold(update, rows)
    if missing:
        rows = await conn.fetch(
            f"SELECT room_id, MAX(pos), MAX({_BUMP_CASE}) FROM events WHERE room_id = ANY($1) "
            "AND pos <= $2 AND exclude_from_sync = 0 GROUP BY room_id",
            Array(missing),
            upto,
            Array(list(BUMP_TYPES)),
        )
        _fold(update, rows)
        update.loaded = missing
    return update


def _fold(update: RecencyUpdate, rows: Iterable[Row]) -> None:
    for r in rows:
        update.latest[str(r[0])] = int(r[1])
        if r[2] is not None:
            update.bump[str(r[0])] = int(r[2])


@dataclass(frozen=True, slots=True)
class RoomFacts:
    """What list filters look at, for the rooms they need it for."""

    direct: frozenset[str] = frozenset()
    encrypted: frozenset[str] = frozenset()
    #: room → ``m.room.create`` ``content.type`` (None for an ordinary room).
    room_type: Mapping[str, str | None] = field(default_factory=dict)
    tags: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: space → its children (``m.space.child`` with a ``via``).
    children: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The rooms the user's ``m.direct`` account data names, when read.
    direct_data: frozenset[str] | None = None


def facts_needed(lists: Iterable[ListRequest]) -> set[str]:
    """Which :class:`RoomFacts` the lists' filters need."""
    need: set[str] = set()
    for lst in lists:
        f = lst.filters
        if f.is_dm is not None:
            need.add("direct")
        if f.is_encrypted is not None:
            need.add("encrypted")
        if f.room_types is not None or f.not_room_types:
            need.add("room_type")
        if f.tags is not None or f.not_tags:
            need.add("tags")
        if f.spaces is not None:
            need.add("children")
    return need


async def direct_rooms(conn: Conn, user_id: str) -> frozenset[str]:
    """The rooms the user's ``m.direct`` account data names."""
    text = await conn.fetchval(
        "SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' "
        "AND type = 'm.direct'",
        user_id,
    )
    content = orjson.loads(text) if text else {}
    out: set[str] = set()
    if isinstance(content, dict):
        for value in content.values():
            if isinstance(value, list):
                out.update(r for r in value if isinstance(r, str))
    return frozenset(out)


def _content(json_text: str) -> dict[str, object]:
    try:
        content = orjson.loads(json_text).get("content")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    return content if isinstance(content, dict) else {}


async def read_facts(
    conn: Conn,
    user_id: str,
    rooms: Mapping[str, Candidate],
    spaces: Sequence[str],
    upto: int,
    need: set[str],
    direct_data: frozenset[str] | None = None,
) -> RoomFacts:
    """The :class:`RoomFacts` in ``need`` for ``rooms`` as of ``upto``. Invites' facts come
    from their stripped state."""
    direct: set[str] = set()
    encrypted: set[str] = set()
    room_type: dict[str, str | None] = {}
    tags: dict[str, frozenset[str]] = {}
    children: dict[str, frozenset[str]] = {}
    ids = list(rooms)
    if "direct" in need:
        if direct_data is None:
            direct_data = await direct_rooms(conn, user_id)
        direct.update(direct_data)
        for c in rooms.values():
            if c.invite_json is not None and orjson.loads(c.invite_json).get("content", {}).get(
                "is_direct"
            ):
                direct.add(c.room_id)
    if "tags" in need:
        rows = await conn.fetch(
            "SELECT room_id, content FROM account_data WHERE user_id = $1 AND type = 'm.tag' "
            "AND room_id = ANY($2)",
            user_id,
            Array(ids),
        )
        for r in rows:
            given = orjson.loads(r[1]).get("tags")
            tags[str(r[0])] = frozenset(given) if isinstance(given, dict) else frozenset()
    types = [
        t
        for t, k in (("m.room.encryption", "encrypted"), ("m.room.create", "room_type"))
        if k in need
    ]
    if types:
        rows = await conn.fetch(
            "SELECT s.room_id, s.type, e.client_json FROM room_state s JOIN events e "
            "ON e.event_id = s.event_id WHERE s.room_id = ANY($1) AND s.type = ANY($2) "
            "AND s.state_key = '' AND s.added_at <= $3 AND s.removed_at > $3",
            Array(ids),
            Array(types),
            upto,
        )
        for r in rows:
            if r[1] == "m.room.encryption":
                encrypted.add(str(r[0]))
            else:
                kind = _content(str(r[2])).get("type")
                room_type[str(r[0])] = kind if isinstance(kind, str) else None
        for c in rooms.values():
            if c.invite_json is None:
                continue
            stripped = orjson.loads(c.invite_json).get("unsigned", {}).get("invite_room_state")
            for s in stripped if isinstance(stripped, list) else []:
                if not isinstance(s, dict):
                    continue
                if s.get("type") == "m.room.encryption":
                    encrypted.add(c.room_id)
                elif s.get("type") == "m.room.create":
                    kind = (s.get("content") or {}).get("type")
                    room_type[c.room_id] = kind if isinstance(kind, str) else None
    if "children" in need and spaces:
        rows = await conn.fetch(
            "SELECT s.room_id, s.state_key, e.client_json FROM room_state s JOIN events e "
            "ON e.event_id = s.event_id WHERE s.room_id = ANY($1) AND s.type = 'm.space.child' "
            "AND s.added_at <= $2 AND s.removed_at > $2",
            Array(list(spaces)),
            upto,
        )
        found: dict[str, set[str]] = {}
        for r in rows:
            if _content(str(r[2])).get("via"):
                found.setdefault(str(r[0]), set()).add(str(r[1]))
        children = {s: frozenset(c) for s, c in found.items()}
    return RoomFacts(
        frozenset(direct), frozenset(encrypted), room_type, tags, children, direct_data
    )


def passes(f: ListFilters, c: Candidate, facts: RoomFacts) -> bool:
    """Whether the room ``c`` passes a list's ``filters``."""
    room_id = c.room_id
    if f.is_dm is not None and (room_id in facts.direct) != f.is_dm:
        return False
    if f.is_invite is not None and (c.membership == "invite") != f.is_invite:
        return False
    if f.is_encrypted is not None and (room_id in facts.encrypted) != f.is_encrypted:
        return False
    kind = facts.room_type.get(room_id)
    if f.room_types is not None and kind not in f.room_types:
        return False
    if kind in f.not_room_types:
        return False
    tags = facts.tags.get(room_id, frozenset())
    if f.tags is not None and not tags & set(f.tags):
        return False
    if f.not_tags and tags & set(f.not_tags):
        return False
    return f.spaces is None or any(room_id in facts.children.get(s, ()) for s in f.spaces)


def bump_of(c: Candidate, recency: Recency) -> int:
    """The room's bump position for this user (see the module docstring)."""
    if c.membership == "join":
        return max(recency.bump.get(c.room_id, 0), c.since)
    return c.since


def latest_of(c: Candidate, recency: Recency) -> int:
    """The newest position of the room this user may be sent."""
    if c.membership == "join":
        return max(recency.latest.get(c.room_id, 0), c.since)
    return c.since


def sort_rooms(rooms: Iterable[Candidate], recency: Recency) -> list[Candidate]:
    """Newest bump first. An invite from another server sorts after the event at its
    ``since`` and before the next: on a tie it comes first, newest invite first; other
    ties by room ID."""
    return sorted(rooms, key=lambda c: (-bump_of(c, recency), -c.arrived, c.room_id))


def windows(ranges: Sequence[tuple[int, int]], ordered: Sequence[Candidate]) -> list[str]:
    """The room IDs inside ``ranges`` (inclusive, in order, each room once)."""
    out: dict[str, None] = {}
    for start, end in ranges:
        for c in ordered[start : end + 1]:
            out[c.room_id] = None
    return list(out)
