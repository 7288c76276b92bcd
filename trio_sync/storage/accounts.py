"""Devices, access tokens and stored filters."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .engine import Array, Conn


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


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A registered device as ``trio-sync token list`` shows it (tokens are not kept)."""

    user_id: str
    device_id: str
    created_at: int


async def token_owner(conn: Conn, token: str) -> tuple[str, str] | None:
    """``(user_id, device_id)`` of the device holding ``token``, or None."""
    row = await conn.fetchrow(
        "SELECT user_id, device_id FROM devices WHERE token_hash = $1", hash_token(token)
    )
    return None if row is None else (str(row[0]), str(row[1]))


async def device_exists(conn: Conn, user_id: str, device_id: str) -> bool:
    """Whether ``device_id`` of ``user_id`` is registered."""
    value = await conn.fetchval(
        "SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
    )
    return value is not None


async def list_devices(conn: Conn, user_id: str | None = None) -> list[DeviceInfo]:
    """Registered devices (of ``user_id``, or all), ordered by user then device."""
    if user_id is None:
        rows = await conn.fetch(
            "SELECT user_id, device_id, created_at FROM devices ORDER BY user_id, device_id"
        )
    else:
        rows = await conn.fetch(
            "SELECT user_id, device_id, created_at FROM devices WHERE user_id = $1 "
            "ORDER BY device_id",
            user_id,
        )
    return [DeviceInfo(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def device_ids_of(conn: Conn, user_ids: Sequence[str]) -> dict[str, set[str]]:
    """The registered device IDs of each of ``user_ids`` (one query; absent: none)."""
    rows = await conn.fetch(
        "SELECT user_id, device_id FROM devices WHERE user_id = ANY($1)", Array(list(user_ids))
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(str(r[0]), set()).add(str(r[1]))
    return out


async def remove_device_of_token(conn: Conn, token: str) -> tuple[str, str] | None:
    """Delete the device holding ``token``, revoking the token; which device it was, or
    None if no device holds it."""
    owner = await token_owner(conn, token)
    if owner is not None:
        await remove_device(conn, *owner)
    return owner


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


def validate_device_ids(user_id: str, device_id: str, server_name: str) -> None:
    """ValueError, saying what is wrong, unless ``user_id`` is ``@localpart:server_name``
    and ``device_id`` is a non-empty ID without whitespace (both at most 255 characters).
    """
    localpart, sep, server = user_id[1:].partition(":")
    if not user_id.startswith("@") or not sep or not localpart or not server:
        raise ValueError(f"{user_id!r} is not a user ID (@localpart:server)")
    if len(user_id) > 255 or any(c.isspace() or not c.isprintable() for c in user_id):
        raise ValueError(
            f"{user_id!r} is not a user ID (too long, or spaces or control characters)"
        )
    if server != server_name:
        raise ValueError(
            f"{user_id} is not a user of this server: server_name is {server_name!r} "
            "(set it with --server-name or in the config file)"
        )
    if not device_id or len(device_id) > 255:
        raise ValueError("the device ID must be 1 to 255 characters")
    if any(c.isspace() or not c.isprintable() for c in device_id):
        raise ValueError(f"{device_id!r} is not a device ID (spaces or control characters)")
