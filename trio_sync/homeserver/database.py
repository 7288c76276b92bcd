"""Read-only access to the homeserver's own PostgreSQL database (Dendrite's tables).

The connection goes over the process's one trio-asyncio bridge (``trio_sync.bridge``) with
the same engine as trio-sync's own PostgreSQL storage, opened read-only: every session has
``default_transaction_read_only`` set, so even a mistaken statement cannot write. Table
and column names are Dendrite's (``userapi_devices``, ``userapi_account_datas``,
``roomserver_events`` …); a lookup is an ``async def op(conn, …)`` run with
``db.engine.read_one`` / ``db.engine.read`` like any storage operation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlparse

from ..errors import StorageError
from ..storage.accounts import Device
from ..storage.engine import Array, Conn, Engine
from ..storage.postgres import open_postgres


@dataclass(frozen=True, slots=True)
class HomeserverDatabase:
    """An open, read-only connection to the homeserver's database."""

    url: str
    engine: Engine


@asynccontextmanager
async def open_homeserver_database(
    url: str, *, readers: int = 4
) -> AsyncIterator[HomeserverDatabase]:
    """Connect read-only to the homeserver database at ``url`` (``postgresql://…``).

    Raises :class:`StorageError` for another scheme or when the server cannot be reached.
    Connections are closed when the context exits, also on cancellation.
    """
    if urlparse(url).scheme not in ("postgres", "postgresql"):
        raise StorageError(f"homeserver database must be postgresql://…, not {url!r}")
    async with open_postgres(url, readonly=True, readers=readers) as engine:
        yield HomeserverDatabase(url, engine)


@asynccontextmanager
async def open_optional_homeserver_database(
    url: str | None,
) -> AsyncIterator[HomeserverDatabase | None]:
    """:func:`open_homeserver_database` when ``url`` is set, else None."""
    if url is None:
        yield None
        return
    async with open_homeserver_database(url) as db:
        yield db


async def existing_access_tokens(conn: Conn, tokens: Sequence[str]) -> set[str]:
    """Which of ``tokens`` are still in Dendrite's devices table (one query on its
    primary key)."""
    rows = await conn.fetch(
        "SELECT access_token FROM userapi_devices WHERE access_token = ANY($1)", Array(list(tokens))
    )
    return {str(r[0]) for r in rows}


async def homeserver_device_ids(conn: Conn, user_ids: Sequence[str]) -> dict[str, set[str]]:
    """The device IDs Dendrite holds for each of ``user_ids`` (``userapi_devices``, one
    query on its ``localpart, server_name, device_id`` index; absent: none)."""
    wanted = {u for u in user_ids if u.startswith("@") and ":" in u}
    localparts = sorted({u[1:].split(":", 1)[0] for u in wanted})
    rows = await conn.fetch(
        "SELECT localpart, server_name, device_id FROM userapi_devices WHERE localpart = ANY($1)",
        Array(localparts),
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        user_id = f"@{r[0]}:{r[1]}"
        if user_id in wanted:
            out.setdefault(user_id, set()).add(str(r[2]))
    return out


async def device_for_access_token(conn: Conn, token: str) -> Device | None:
    """The device Dendrite issued ``token`` to (``userapi_devices``), or None.

    Dendrite stores the token itself as the table's primary key; its ``session_id`` is the
    one its ``transaction_id.session_id`` fields carry.
    """
    row = await conn.fetchrow(
        "SELECT localpart, server_name, device_id, session_id FROM userapi_devices "
        "WHERE access_token = $1",
        token,
    )
    if row is None:
        return None
    return Device(f"@{row[0]}:{row[1]}", row[2], row[3])
