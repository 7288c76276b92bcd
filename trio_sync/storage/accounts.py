"""Devices, access tokens and stored filters."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from .engine import Conn


@dataclass(frozen=True, slots=True)
class Device:
    user_id: str
    device_id: str
    session_id: int | None


def hash_token(token: str) -> str:
    """Access tokens are stored only as their SHA-256 hex digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh, unguessable access token."""
    return "tsy_" + secrets.token_urlsafe(32)


#: The channel :func:`token_changed` notifies; watched by token caches.
TOKEN_CHANNEL = "trio_sync_token_changes"
#: What a token cache's watch reads (see ``Engine.change_watch``).
TOKEN_COUNTER_SQL = "SELECT position FROM token_changes WHERE id = 1"


async def token_changed(conn: Conn) -> None:
    """Record, in the caller's transaction, that a device or token changed."""
    await conn.execute("UPDATE token_changes SET position = position + 1 WHERE id = 1")
    await conn.notify(TOKEN_CHANNEL)


async def add_device(
    conn: Conn, user_id: str, device_id: str, token: str, session_id: int | None = None
) -> None:
    """Register (or re-key) a device; its previous token stops working."""
    await token_changed(conn)
    await conn.execute(
        "INSERT INTO devices (user_id, device_id, token_hash, session_id, created_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id) DO UPDATE SET "
        "token_hash = excluded.token_hash, session_id = excluded.session_id",
        user_id,
        device_id,
        hash_token(token),
        session_id,
        int(time.time() * 1000),
    )


async def remove_device(conn: Conn, user_id: str, device_id: str) -> bool:
    """Delete a device, revoking its token; False if there was no such device."""
    row = await conn.fetchrow(
        "DELETE FROM devices WHERE user_id = $1 AND device_id = $2 RETURNING device_id",
        user_id,
        device_id,
    )
    if row is None:
        return False
    await token_changed(conn)
    return True


async def device_for_token(conn: Conn, token: str) -> Device | None:
    """The device an access token belongs to, or None."""
    row = await conn.fetchrow(
        "SELECT user_id, device_id, session_id FROM devices WHERE token_hash = $1",
        hash_token(token),
    )
    return None if row is None else Device(row[0], row[1], row[2])


async def store_filter(conn: Conn, user_id: str, filter_json: str) -> int:
    """Store a (canonical JSON) filter for ``user_id``; an identical one keeps its ID."""
    existing = await conn.fetchval(
        "SELECT filter_id FROM filters WHERE user_id = $1 AND filter_json = $2",
        user_id,
        filter_json,
    )
    if existing is not None:
        return int(existing)
    last = await conn.fetchval("SELECT MAX(filter_id) FROM filters WHERE user_id = $1", user_id)
    filter_id = 0 if last is None else int(last) + 1
    await conn.execute(
        "INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)",
        user_id,
        filter_id,
        filter_json,
    )
    return filter_id


async def load_filter(conn: Conn, user_id: str, filter_id: int) -> str | None:
    """A stored filter's JSON, or None."""
    value = await conn.fetchval(
        "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2",
        user_id,
        filter_id,
    )
    return None if value is None else str(value)
