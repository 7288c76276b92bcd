"""Applying a batch of log messages to storage: one write transaction per batch.

The batch's data, the stream positions it allocated and the source's consumed offset are
committed together, so a crash at any moment loses and doubles nothing. Each message is
validated against what is stored before anything of it is written; one that fails is
recorded in ``ingest_rejects`` inside the same transaction and the batch goes on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..redaction import redact, redact_for_client
from ..storage import FOREVER, Array, Conn
from ..storage.history import STREAM_SUB, backfill_anchor
from ..storage.relations import INSERT_RELATION, drop_relation, relation_row
from ..storage.rooms import MEMBER, RESET_EVENT_ID, STRIPPED_TYPES
from ..tokens import StreamToken
from .forks import membership_of, state_before_event
from .messages import (
    BadMessage,
    Ignored,
    Message,
    NewInviteEvent,
    NewRoomEvent,
    OldRoomEvent,
    Pdu,
    PurgeRoom,
    RedactedEvent,
    RetireInviteEvent,
)
from .user_apply import apply_user_message
from .user_messages import TypingUpdate

#: State that travels with an invite so the invitee can render the room (spec: stripped state).
STRIPPED_STATE_TYPES = STRIPPED_TYPES


@dataclass(frozen=True, slots=True)
class Item:
    """One log message: where it came from, its bytes, and what parsing made of it."""

    offset: int | None
    raw: bytes
    message: Message | BadMessage
    #: The source's position once this message is applied, when that is not ``offset``
    #: itself: a file line starts at ``offset`` and is consumed at the next line's start.
    end: int | None = None

    @property
    def reached(self) -> int | None:
        """The source's position once this message is applied (``end``, else ``offset``)."""
        return self.offset if self.end is None else self.end


@dataclass(slots=True)
class Applied:
    """What a committed batch changed: enough for the notifier to wake the right users."""

    token: StreamToken = field(default_factory=StreamToken)
    rooms: set[str] = field(default_factory=set)
    #: (room_id, user_id, membership) in log order.
    memberships: list[tuple[str, str, str]] = field(default_factory=list)
    invited: set[str] = field(default_factory=set)
    purged: set[str] = field(default_factory=set)
    #: Users whose own data changed (account data, unread counts, private receipts).
    users: set[str] = field(default_factory=set)
    #: Rooms whose joined members see the change (receipts, typing).
    ephemeral_rooms: set[str] = field(default_factory=set)
    #: Users whose change (presence, device keys) everyone sharing a room with them sees.
    shared: set[str] = field(default_factory=set)
    #: (user_id, device_id) with new to-device messages: only that device is woken.
    devices: set[tuple[str, str]] = field(default_factory=set)
    #: Typing changes, for the in-memory typing state once the batch is committed.
    typing: list[TypingUpdate] = field(default_factory=list)
    #: How many devices' one-time-key counts were written.
    key_counts: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    #: (offset, reason) of each rejected message, in log order.
    rejects: list[tuple[int | None, str]] = field(default_factory=list)

    def merge(self, later: Applied) -> None:
        """Fold in what a later batch changed."""
        self.token = self.token.union(later.token)
        self.rooms |= later.rooms
        self.memberships += later.memberships
        self.invited |= later.invited
        self.purged |= later.purged
        self.users |= later.users
        self.ephemeral_rooms |= later.ephemeral_rooms
        self.shared |= later.shared
        self.devices |= later.devices
        self.typing += later.typing
        self.key_counts += later.key_counts
        self.accepted += later.accepted
        self.duplicates += later.duplicates
        self.rejected += later.rejected
        self.rejects += later.rejects


class _Positions:
    """The stream counters, read once per batch and written back at its end, and the
    batch's room events that are already stored (fetched in one query up front)."""

    def __init__(self, rows: Sequence[Any], stored: set[str]) -> None:
        self.values = {row[0]: int(row[1]) for row in rows}
        self.start = dict(self.values)
        self.stored = stored

    def next(self, stream: str) -> int:
        self.values[stream] += 1
        return self.values[stream]

    def peek(self, stream: str) -> int:
        return self.values[stream] + 1

    def changed(self) -> list[tuple[str, int]]:
        return [(k, v) for k, v in self.values.items() if v != self.start[k]]

    def token(self) -> StreamToken:
        return StreamToken(*(self.values[name] for name in StreamToken.STREAMS))


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def apply_batch(
    conn: Conn,
    source: str,
    items: Sequence[Item],
    end_offset: int | None,
    epoch: str | None = None,
) -> Applied:
    """Apply ``items`` in order and record ``end_offset`` (counted in ``epoch``, see
    :class:`~trio_sync.sources.base.Position`) as consumed for ``source``."""
    # Events that touch state must be known as duplicates before their state delta is
    # looked at. In a batch of several messages, all events are looked up at once so that
    # runs of plain events (no state) can be inserted together; a lone plain event is
    # found to be a duplicate by its INSERT.
    bulk = len(items) > 1
    lookup = [
        m.event.event_id
        for m in (i.message for i in items)
        if isinstance(m, NewRoomEvent) and (bulk or _touches_state(m))
    ]
    stored: set[str] = set()
    if lookup:
        rows = await conn.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1)", Array(lookup)
        )
        stored = {r[0] for r in rows}
    positions = _Positions(await conn.fetch("SELECT stream, position FROM streams"), stored)
    out = Applied()
    plain: list[tuple[object, ...]] = []
    related: list[tuple[object, ...]] = []
    for item in items:
        message = item.message
        if bulk and isinstance(message, NewRoomEvent) and not _touches_state(message):
            ev = message.event
            if ev.event_id in positions.stored:
                out.duplicates += 1
            else:
                txn = (message.txn_session, message.txn_id)
                at = positions.next("pdu")
                plain.append(
                    (*_event_row(at, ev, ev.unsigned, False, txn), message.history_visibility)
                )
                relation = _relation_row(at, ev)
                if relation is not None:
                    related.append(relation)
                positions.stored.add(ev.event_id)
                out.rooms.add(ev.room_id)
                out.accepted += 1
            continue
        if plain:
            await _flush(conn, plain, related)
        try:
            if isinstance(message, BadMessage):
                raise message
            await _apply(conn, positions, out, message)
        except BadMessage as exc:
            out.rejected += 1
            out.rejects.append((item.offset, str(exc)[:2000]))
            await conn.execute(
                "INSERT INTO ingest_rejects (id, source, position, reason, raw, rejected_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                positions.next("reject"),
                source,
                item.offset,
                str(exc)[:2000],
                item.raw,
                int(time.time() * 1000),
            )
    if plain:
        await _flush(conn, plain, related)
    changed = positions.changed()
    if changed:
        await conn.executemany("UPDATE streams SET position = $2 WHERE stream = $1", changed)
    if end_offset is not None:
        await conn.execute(
            "INSERT INTO ingest_offsets (source, position, epoch) VALUES ($1, $2, $3) "
            "ON CONFLICT (source) DO UPDATE SET position = excluded.position, "
            "epoch = excluded.epoch",
            source,
            end_offset,
            epoch,
        )
    out.token = positions.token()
    return out


async def _flush(
    conn: Conn, plain: list[tuple[object, ...]], related: list[tuple[object, ...]]
) -> None:
    """Insert a run of plain events and their relations, and empty both lists."""
    await conn.executemany(_INSERT_EVENT, plain)
    if related:
        await conn.executemany(INSERT_RELATION, related)
    plain.clear()
    related.clear()


def _relation_row(at: int, ev: Pdu) -> tuple[object, ...] | None:
    return relation_row(at, ev.event_id, ev.room_id, ev.type, ev.sender, ev.content)


def _touches_state(m: NewRoomEvent) -> bool:
    return bool(
        m.event.state_key is not None
        or m.adds_state_event_ids
        or m.removes_state_event_ids
        or m.rewrites_state
        or m.state_before_adds_event_ids
        or m.state_before_removes_event_ids
    )


async def _apply(conn: Conn, pos: _Positions, out: Applied, message: Message) -> None:
    if isinstance(message, NewRoomEvent):
        await _new_room_event(conn, pos, out, message)
    elif isinstance(message, OldRoomEvent):
        await _old_room_event(conn, pos, out, message.event)
    elif isinstance(message, NewInviteEvent):
        await _new_invite(conn, pos, out, message.event, message.room_version)
    elif isinstance(message, RetireInviteEvent):
        await _retire_invite(conn, pos, out, message)
    elif isinstance(message, RedactedEvent):
        await _redact(conn, out, message)
    elif isinstance(message, PurgeRoom):
        await _purge(conn, out, message.room_id)
    elif isinstance(message, Ignored):
        out.accepted += 1
    else:
        await apply_user_message(conn, pos, out, message)


_INSERT_EVENT = (
    "INSERT INTO events (pos, event_id, room_id, type, state_key, sender, depth, "
    "origin_server_ts, room_version, client_json, pdu_json, exclude_from_sync, "
    "txn_session, txn_id, replaces_state, topo_anchor, topo_sub, history_visibility) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
    "$18) ON CONFLICT (event_id) DO NOTHING"
)

#: ``(topo_anchor, topo_sub)`` of an event that is not part of the room's history.
_OUTLIER: tuple[int | None, int | None] = (None, None)


def _event_row(
    at: int,
    ev: Pdu,
    unsigned: dict[str, Any],
    exclude: bool,
    txn: tuple[int | None, str | None],
    history: tuple[int | None, int | None] | None = None,
) -> tuple[object, ...]:
    """The ``events`` row of ``ev`` at position ``at``, less its history_visibility.

    ``history`` is its place in the room's history order (``storage/history.py``): by
    default that of a stream event, or none for an excluded one.
    """
    if history is None:
        history = _OUTLIER if exclude else (at, STREAM_SUB)
    return (
        at,
        ev.event_id,
        ev.room_id,
        ev.type,
        ev.state_key,
        ev.sender,
        ev.depth,
        ev.origin_server_ts,
        ev.room_version,
        _dumps(ev.client_dict(unsigned)),
        _dumps(ev.pdu_dict()),
        1 if exclude else 0,
        txn[0],
        txn[1],
        unsigned.get("replaces_state"),
        *history,
    )


async def _insert_event(
    conn: Conn,
    pos: _Positions,
    ev: Pdu,
    unsigned: dict[str, Any],
    *,
    exclude: bool = False,
    txn: tuple[int | None, str | None] = (None, None),
    visibility: str | None = None,
    history: tuple[int | None, int | None] | None = None,
) -> bool:
    """Store ``ev`` at the next PDU position; False (and no position used) if already stored."""
    row = await conn.fetchrow(
        _INSERT_EVENT + " RETURNING pos",
        *_event_row(pos.peek("pdu"), ev, unsigned, exclude, txn, history),
        visibility,
    )
    if row is None:
        return False
    at = pos.next("pdu")
    relation = _relation_row(at, ev)
    if relation is not None:
        await conn.execute(INSERT_RELATION, *relation)
    return True


async def _old_room_event(conn: Conn, pos: _Positions, out: Applied, ev: Pdu) -> None:
    """Store a backfilled event in the room's history just before the first stream event
    deeper than it (at the end when there is none); never sent down ``/sync``."""
    anchor = await backfill_anchor(conn, ev.room_id, ev.depth)
    place = (pos.peek("pdu") if anchor is None else anchor, max(min(ev.depth, STREAM_SUB - 1), 0))
    if await _insert_event(conn, pos, ev, ev.unsigned, exclude=True, history=place):
        out.accepted += 1
    else:
        out.duplicates += 1


async def _new_room_event(conn: Conn, pos: _Positions, out: Applied, m: NewRoomEvent) -> None:
    ev = m.event
    if ev.event_id in pos.stored:
        out.duplicates += 1
        return
    # Validate everything the state delta refers to before writing anything.
    supplied = {e.event_id: e for e in m.add_state_events}
    supplied[ev.event_id] = ev
    wanted = [i for i in m.adds_state_event_ids if i not in supplied]
    adds: dict[str, tuple[str, str, str | None]] = {}
    if wanted:
        for row in await conn.fetch(
            "SELECT event_id, room_id, type, state_key, client_json FROM events "
            "WHERE event_id = ANY($1)",
            Array(wanted),
        ):
            if row[1] != ev.room_id or row[3] is None:
                raise BadMessage(f"adds_state_event_ids: {row[0]} is not state of {ev.room_id}")
            content = orjson.loads(row[4]).get("content") or {}
            adds[row[0]] = (row[2], row[3], _membership(row[2], content))
        missing = [i for i in wanted if i not in adds]
        if missing:
            raise BadMessage(f"adds_state_event_ids refers to unknown events: {missing[:5]}")
    for event_id in m.adds_state_event_ids:
        if event_id in supplied:
            sev = supplied[event_id]
            if sev.state_key is None or sev.room_id != ev.room_id:
                raise BadMessage(f"adds_state_event_ids: {event_id} is not state of {ev.room_id}")
            adds[event_id] = (sev.type, sev.state_key, _membership(sev.type, sev.content))
    keys = [(t, k) for t, k, _ in adds.values()]
    if len(set(keys)) != len(keys):
        raise BadMessage("adds_state_event_ids adds two events for one (type, state_key)")

    fork = await state_before_event(conn, m, adds, supplied)
    supplied_new = False
    for extra in m.add_state_events:
        if extra.event_id != ev.event_id:
            supplied_new |= await _insert_event(conn, pos, extra, extra.unsigned, exclude=True)
    unsigned = dict(ev.unsigned)
    if ev.state_key is not None:
        key = (ev.type, ev.state_key)
        if fork is not None and key in fork.overrides:
            replaced: str | None = fork.overrides[key][0] or None
        else:
            replaced = await conn.fetchval(
                "SELECT event_id FROM room_state WHERE room_id = $1 AND type = $2 "
                "AND state_key = $3 AND removed_at = $4 AND event_id <> $5",
                ev.room_id,
                ev.type,
                ev.state_key,
                FOREVER,
                RESET_EVENT_ID,
            )
        prev = None
        if replaced is not None:
            prev = await conn.fetchrow(
                "SELECT event_id, client_json FROM events WHERE event_id = $1", replaced
            )
        if prev is not None:
            unsigned["replaces_state"] = prev[0]
            unsigned["prev_content"] = orjson.loads(prev[1]).get("content", {})
    if not await _insert_event(
        conn,
        pos,
        ev,
        unsigned,
        txn=(m.txn_session, m.txn_id),
        visibility=m.history_visibility,
    ):
        out.duplicates += 1
        return
    at = pos.values["pdu"]
    if fork is not None:
        await fork.store(conn, ev.room_id, at)
    pos.stored.add(ev.event_id)
    out.accepted += 1
    out.rooms.add(ev.room_id)
    closed: list[Any] = []
    if m.rewrites_state:
        # A reset membership (no event) is no state: a rewrite leaves it in force.
        closed += await conn.fetch(
            "UPDATE room_state SET removed_at = $2 WHERE room_id = $1 AND removed_at = $3 "
            "AND event_id <> $4 RETURNING state_key, membership",
            ev.room_id,
            at,
            FOREVER,
            RESET_EVENT_ID,
        )
    if m.removes_state_event_ids:
        closed += await conn.fetch(
            "UPDATE room_state SET removed_at = $2 WHERE room_id = $1 AND removed_at = $3 "
            "AND event_id = ANY($4) RETURNING state_key, membership",
            ev.room_id,
            at,
            FOREVER,
            Array(m.removes_state_event_ids),
        )
    # A membership dropped from the state without a replacement (a state reset): the user
    # is out of the room from here on, recorded as a ``leave`` interval with no event.
    re_added = {k for t, k, _ in adds.values() if t == "m.room.member"}
    for row in closed:
        if row[1] is not None and row[0] not in re_added:
            out.memberships.append((ev.room_id, row[0], "leave"))
            if row[1] != "leave":
                await _insert_state(conn, ev.room_id, MEMBER, row[0], RESET_EVENT_ID, "leave", at)
    for event_id, (etype, state_key, membership) in adds.items():
        # State whose events came with this message (a join over federation) was the
        # room's state before the event: it takes effect at the last supplied event's
        # position, allocated in this same transaction (so no sync token lies between).
        change_at = at - 1 if supplied_new and event_id != ev.event_id else at
        await conn.execute(
            "UPDATE room_state SET removed_at = $4 WHERE room_id = $1 AND type = $2 "
            "AND state_key = $3 AND removed_at = $5",
            ev.room_id,
            etype,
            state_key,
            change_at,
            FOREVER,
        )
        await _insert_state(conn, ev.room_id, etype, state_key, event_id, membership, change_at)
        if membership is not None:
            out.memberships.append((ev.room_id, state_key, membership))
            if membership == "invite" and event_id == ev.event_id:
                await _new_invite(conn, pos, out, ev, ev.room_version, counted=True)
            elif membership != "invite":
                await _retire_for(conn, pos, out, ev.room_id, state_key, membership, event_id)


async def _insert_state(
    conn: Conn,
    room_id: str,
    etype: str,
    state_key: str,
    event_id: str,
    membership: str | None,
    at: int,
) -> None:
    """Open a ``room_state`` interval at ``at``."""
    await conn.execute(
        "INSERT INTO room_state (room_id, type, state_key, event_id, membership, "
        "added_at, removed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        room_id,
        etype,
        state_key,
        event_id,
        membership,
        at,
        FOREVER,
    )


def _membership(etype: str, content: dict[str, Any]) -> str | None:
    return membership_of(etype, content)


async def _stripped_state(conn: Conn, room_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT e.client_json FROM room_state s JOIN events e ON e.event_id = s.event_id "
        "WHERE s.room_id = $1 AND s.removed_at = $2 AND s.type = ANY($3)",
        room_id,
        FOREVER,
        Array(STRIPPED_STATE_TYPES),
    )
    out = []
    for row in rows:
        event = orjson.loads(row[0])
        out.append({k: event[k] for k in ("content", "sender", "state_key", "type")})
    return out


async def _new_invite(
    conn: Conn, pos: _Positions, out: Applied, ev: Pdu, room_version: str, counted: bool = False
) -> None:
    """Make ``ev`` (an invite membership event) an active invite for its target."""
    if ev.state_key is None:
        return
    given = ev.unsigned.get("invite_room_state")
    stripped = given if isinstance(given, list) else await _stripped_state(conn, ev.room_id)
    # The invite event for invite_state: its stripped state rides along in unsigned.
    invite = ev.client_dict()
    invite.setdefault("unsigned", {})["invite_room_state"] = stripped
    row = await conn.fetchrow(
        "INSERT INTO invites (pos, event_id, room_id, user_id, room_version, event_json, "
        "pdu_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING "
        "RETURNING pos",
        pos.peek("invite"),
        ev.event_id,
        ev.room_id,
        ev.state_key,
        room_version,
        _dumps(invite),
        # The newest PDU position when it arrived: where an invite from another server
        # (no room event here) sorts among the user's rooms.
        pos.peek("pdu") - 1,
    )
    if row is not None:
        pos.next("invite")
        out.invited.add(ev.state_key)
    if not counted:
        if row is None:
            out.duplicates += 1
        else:
            out.accepted += 1


async def _retire_for(
    conn: Conn,
    pos: _Positions,
    out: Applied,
    room_id: str,
    user_id: str,
    membership: str,
    by_event: str | None,
) -> None:
    """Retire every active invite of ``user_id`` to ``room_id``."""
    rows = await conn.fetch(
        "UPDATE invites SET retired_at = $3, retired_membership = $4, retired_by_event_id = $5 "
        "WHERE room_id = $1 AND user_id = $2 AND retired_at IS NULL RETURNING pos",
        room_id,
        user_id,
        pos.peek("invite"),
        membership,
        by_event,
    )
    if rows:
        pos.next("invite")
        out.invited.add(user_id)


async def _retire_invite(conn: Conn, pos: _Positions, out: Applied, m: RetireInviteEvent) -> None:
    row = await conn.fetchrow(
        "SELECT room_id, user_id FROM invites WHERE event_id = $1", m.event_id
    )
    if row is None:
        raise BadMessage(f"retire_invite_event for unknown invite {m.event_id}")
    await _retire_for(conn, pos, out, row[0], row[1], m.membership, m.retired_by_event_id)
    out.accepted += 1


async def _redact(conn: Conn, out: Applied, m: RedactedEvent) -> None:
    row = await conn.fetchrow(
        "SELECT room_id, room_version, client_json, pdu_json FROM events WHERE event_id = $1",
        m.redacted_event_id,
    )
    if row is None:
        raise BadMessage(f"redacted_event for unknown event {m.redacted_event_id}")
    because = m.redacted_because
    if because.room_id != row[0]:
        raise BadMessage("RedactedBecause is not in the redacted event's room")
    because_json = because.client_dict()
    client = redact_for_client(orjson.loads(row[2]), row[1], because_json)
    pdu = redact(orjson.loads(row[3]), row[1])
    await conn.execute(
        "UPDATE events SET client_json = $2, pdu_json = $3, redacted_because = $4 "
        "WHERE event_id = $1",
        m.redacted_event_id,
        _dumps(client),
        _dumps(pdu),
        _dumps(because_json),
    )
    if "m.relates_to" not in client["content"]:
        await drop_relation(conn, m.redacted_event_id)
    # The redacted content also lives on as the next state event's prev_content.
    for nxt in await conn.fetch(
        "SELECT event_id, client_json FROM events WHERE replaces_state = $1",
        m.redacted_event_id,
    ):
        event = orjson.loads(nxt[1])
        event.setdefault("unsigned", {})["prev_content"] = client["content"]
        await conn.execute(
            "UPDATE events SET client_json = $2 WHERE event_id = $1", nxt[0], _dumps(event)
        )
    invite = await conn.fetchval(
        "SELECT event_json FROM invites WHERE event_id = $1", m.redacted_event_id
    )
    if invite is not None:
        stored = orjson.loads(invite)
        redacted = redact_for_client(stored, row[1], because_json)
        redacted["unsigned"]["invite_room_state"] = stored.get("unsigned", {}).get(
            "invite_room_state", []
        )
        await conn.execute(
            "UPDATE invites SET event_json = $2 WHERE event_id = $1",
            m.redacted_event_id,
            _dumps(redacted),
        )
    out.accepted += 1


async def _purge(conn: Conn, out: Applied, room_id: str) -> None:
    for table in ("events", "room_state", "invites", "relations", "event_state_before"):
        await conn.execute(f"DELETE FROM {table} WHERE room_id = $1", room_id)
    out.purged.add(room_id)
    out.accepted += 1
