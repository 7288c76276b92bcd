"""Applying the per-user stream messages inside a batch's write transaction.

Each message takes the next position of its stream (none when it changes nothing a client
sees) and records in :class:`Applied` whom the change must wake. Typing is not stored: it
is handed on in ``Applied.typing`` to the in-memory typing state, after the commit.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

import orjson

from ..storage import Conn
from ..storage.relations import newest_in_thread
from .bad_message import BadMessage
from .user_messages import (
    PRESENCE_STATES,
    ClientData,
    KeyChange,
    NotificationData,
    OneTimeKeyCounts,
    Presence,
    Receipt,
    SendToDevice,
    TypingUpdate,
    UserMessage,
)

if TYPE_CHECKING:
    from .apply import Applied


class Positions(Protocol):
    """The batch's stream counters (``apply._Positions``)."""

    def next(self, stream: str) -> int: ...

    def peek(self, stream: str) -> int: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(obj: object) -> str:
    return orjson.dumps(obj).decode()


async def apply_user_message(
    conn: Conn, pos: Positions, out: Applied, message: UserMessage
) -> None:
    """Apply one per-user stream message; raise :class:`BadMessage` if it cannot be."""
    if isinstance(message, ClientData):
        await _client_data(conn, pos, out, message)
    elif isinstance(message, TypingUpdate):
        out.typing.append(message)
    elif isinstance(message, Receipt):
        await _receipt(conn, pos, out, message)
    elif isinstance(message, SendToDevice):
        await _send_to_device(conn, pos, out, message)
        return  # counts itself (duplicates)
    elif isinstance(message, KeyChange):
        await conn.execute(
            "INSERT INTO key_changes (user_id, pos) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET pos = excluded.pos",
            message.user_id,
            pos.next("device_list"),
        )
        out.shared.add(message.user_id)
    elif isinstance(message, OneTimeKeyCounts):
        await conn.execute(
            "INSERT INTO device_key_counts (user_id, device_id, one_time_key_counts, "
            "fallback_key_types) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) "
            "DO UPDATE SET one_time_key_counts = excluded.one_time_key_counts, "
            "fallback_key_types = excluded.fallback_key_types",
            message.user_id,
            message.device_id,
            _json(message.counts),
            _json(list(message.fallback_key_types)),
        )
        out.key_counts += 1
    elif isinstance(message, NotificationData):
        await conn.execute(
            "INSERT INTO unread_counts (user_id, room_id, thread_id, notification_count, "
            "highlight_count, pos) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET "
            "notification_count = excluded.notification_count, "
            "highlight_count = excluded.highlight_count, pos = excluded.pos",
            message.user_id,
            message.room_id,
            message.thread_id,
            message.notification_count,
            message.highlight_count,
            pos.next("notification"),
        )
        out.users.add(message.user_id)
    elif isinstance(message, Presence):
        await _presence(conn, pos, out, message)
    else:  # pragma: no cover - the parser produces nothing else
        raise BadMessage(f"unexpected message {type(message).__name__}")
    out.accepted += 1


async def _client_data(conn: Conn, pos: Positions, out: Applied, m: ClientData) -> None:
    await conn.execute(
        "INSERT INTO account_data (user_id, room_id, type, content, pos) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, type) "
        "DO UPDATE SET content = excluded.content, pos = excluded.pos",
        m.user_id,
        m.room_id,
        m.type,
        _json(m.content),
        pos.next("account_data"),
    )
    out.users.add(m.user_id)


async def _receipt(conn: Conn, pos: Positions, out: Applied, m: Receipt) -> None:
    thread = m.thread_id or ""
    await conn.execute(
        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, pos) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET "
        "event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos",
        m.room_id,
        m.type,
        m.user_id,
        thread,
        m.event_id,
        m.ts or _now_ms(),
        pos.next("receipt"),
    )
    if m.type == "m.read.private":
        out.users.add(m.user_id)
    else:
        out.ephemeral_rooms.add(m.room_id)
    await _clear_unread(conn, pos, out, m)


async def _clear_unread(conn: Conn, pos: Positions, out: Applied, m: Receipt) -> None:
    """A user's own read receipt clears its counts when it is at (or after) the newest
    event of what it covers: for an unthreaded receipt the room's newest event, and then
    the whole room's counts; for a threaded one the thread's newest event (its newest
    reply, else its root; for ``main`` the newest event in no thread; the room's newest
    event for a thread not stored here), and then that thread's counts only."""
    row = await conn.fetchrow(
        "SELECT e.pos, (SELECT MAX(l.pos) FROM events l WHERE l.room_id = $2 "
        "AND l.exclude_from_sync = 0) FROM events e WHERE e.event_id = $1 AND e.room_id = $2",
        m.event_id,
        m.room_id,
    )
    if row is None or row[1] is None:
        return
    newest = row[1]
    if m.thread_id is not None:
        # A thread whose root is not stored here is judged by the room's newest event.
        newest = await newest_in_thread(conn, m.room_id, m.thread_id) or newest
    if row[0] < newest:
        return
    sql = (
        "UPDATE unread_counts SET notification_count = 0, highlight_count = 0, pos = $3 "
        "WHERE user_id = $1 AND room_id = $2 "
        "AND (notification_count <> 0 OR highlight_count <> 0)"
    )
    args: list[object] = [m.user_id, m.room_id, pos.peek("notification")]
    if m.thread_id is not None:
        sql += " AND thread_id = $4"
        args.append("" if m.thread_id == "main" else m.thread_id)
    cleared = await conn.fetch(sql + " RETURNING room_id", *args)
    if cleared:
        pos.next("notification")
        out.users.add(m.user_id)


async def _send_to_device(conn: Conn, pos: Positions, out: Applied, m: SendToDevice) -> None:
    if m.txn_id is not None:
        fresh = await conn.fetchrow(
            "INSERT INTO device_txns (sender, sender_device, txn_id, user_id, device_id) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING txn_id",
            m.sender,
            m.sender_device,
            m.txn_id,
            m.user_id,
            m.device_id,
        )
        if fresh is None:
            out.duplicates += 1
            return
    if m.device_id == "*":
        rows = await conn.fetch(
            "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id", m.user_id
        )
        targets = [str(r[0]) for r in rows]
    else:
        targets = [m.device_id]
    content = _json(m.content)
    for device_id in targets:
        await conn.execute(
            "INSERT INTO device_inbox (pos, user_id, device_id, sender, type, content) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            pos.next("to_device"),
            m.user_id,
            device_id,
            m.sender,
            m.type,
            content,
        )
        out.devices.add((m.user_id, device_id))
    out.accepted += 1


def combine_presence(states: list[str]) -> str:
    """A user's presence from its devices': online beats unavailable beats offline."""
    return min(states, key=PRESENCE_STATES.index, default="offline")


async def _presence(conn: Conn, pos: Positions, out: Applied, m: Presence) -> None:
    now = m.last_active_ts or _now_ms()
    state = m.presence
    if m.device_id is not None:
        before = await conn.fetchval(
            "SELECT presence FROM device_presence WHERE user_id = $1 AND device_id = $2",
            m.user_id,
            m.device_id,
        )
        if before == m.presence and m.status_msg is None:
            return
        await conn.execute(
            "INSERT INTO device_presence (user_id, device_id, presence, last_active_ts) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET "
            "presence = excluded.presence, last_active_ts = excluded.last_active_ts",
            m.user_id,
            m.device_id,
            m.presence,
            now,
        )
        rows = await conn.fetch(
            "SELECT presence FROM device_presence WHERE user_id = $1", m.user_id
        )
        state = combine_presence([str(r[0]) for r in rows])
    current = await conn.fetchrow(
        "SELECT presence, status_msg FROM presence WHERE user_id = $1", m.user_id
    )
    if m.status_msg is None:
        status = current[1] if current is not None else None
    else:
        status = m.status_msg or None
    if current is not None and current[0] == state and current[1] == status:
        return
    await conn.execute(
        "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, "
        "currently_active, pos) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) "
        "DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg, "
        "last_active_ts = excluded.last_active_ts, "
        "currently_active = excluded.currently_active, pos = excluded.pos",
        m.user_id,
        state,
        status,
        now,
        1 if state == "online" else 0,
        pos.next("presence"),
    )
    out.shared.add(m.user_id)
