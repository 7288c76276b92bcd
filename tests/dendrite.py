"""Dendrite's own PostgreSQL tables, created in a fresh database per test.

The table and column definitions follow Dendrite's ``userapi/storage/postgres/*_table.go``
and ``roomserver/storage/postgres/*_table.go`` (names, types, keys and the pre-assigned
event type / state key numbers), so lookups are tested against the schema a real Dendrite
has. :class:`DendriteDatabase` writes rows the way Dendrite would, for tests to read back
through trio-sync's read-only connection.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import pytest

from trio_sync.storage.engine import Conn
from trio_sync.storage.postgres import open_postgres

from .conftest import PG_DSN, _pg_admin, _pg_url

USERAPI_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS userapi_device_session_id_seq START 1;
CREATE TABLE IF NOT EXISTS userapi_devices (
    access_token TEXT NOT NULL PRIMARY KEY,
    session_id BIGINT NOT NULL DEFAULT nextval('userapi_device_session_id_seq'),
    device_id TEXT NOT NULL,
    localpart TEXT NOT NULL,
    server_name TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS userapi_device_localpart_id_idx
    ON userapi_devices(localpart, server_name, device_id);

CREATE TABLE IF NOT EXISTS userapi_accounts (
    localpart TEXT NOT NULL,
    server_name TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    password_hash TEXT,
    appservice_id TEXT,
    is_deactivated BOOLEAN DEFAULT FALSE,
    account_type SMALLINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS userapi_accounts_idx ON userapi_accounts(localpart, server_name);

CREATE TABLE IF NOT EXISTS userapi_account_datas (
    localpart TEXT NOT NULL,
    server_name TEXT NOT NULL,
    room_id TEXT,
    type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS userapi_account_datas_idx
    ON userapi_account_datas(localpart, server_name, room_id, type);

CREATE TABLE IF NOT EXISTS keyserver_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    ts_added_secs BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    CONSTRAINT keyserver_one_time_keys_unique UNIQUE (user_id, device_id, key_id, algorithm)
);
CREATE INDEX IF NOT EXISTS keyserver_one_time_keys_idx
    ON keyserver_one_time_keys (user_id, device_id);

CREATE TABLE IF NOT EXISTS keyserver_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    ts_added_secs BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    used BOOLEAN NOT NULL,
    CONSTRAINT keyserver_fallback_keys_unique UNIQUE (user_id, device_id, algorithm)
);
CREATE INDEX IF NOT EXISTS keyserver_fallback_keys_idx
    ON keyserver_fallback_keys (user_id, device_id);

CREATE TABLE IF NOT EXISTS keyserver_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    ts_added_secs BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    display_name TEXT,
    CONSTRAINT keyserver_device_keys_unique UNIQUE (user_id, device_id)
);

CREATE SEQUENCE IF NOT EXISTS keyserver_key_changes_seq;
CREATE TABLE IF NOT EXISTS keyserver_key_changes (
    change_id BIGINT PRIMARY KEY DEFAULT nextval('keyserver_key_changes_seq'),
    user_id TEXT NOT NULL,
    CONSTRAINT keyserver_key_changes_unique_per_user UNIQUE (user_id)
);

CREATE TABLE IF NOT EXISTS keyserver_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type SMALLINT NOT NULL,
    key_data TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);
"""

ROOMSERVER_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS roomserver_room_nid_seq;
CREATE TABLE IF NOT EXISTS roomserver_rooms (
    room_nid BIGINT PRIMARY KEY DEFAULT nextval('roomserver_room_nid_seq'),
    room_id TEXT NOT NULL CONSTRAINT roomserver_room_id_unique UNIQUE,
    latest_event_nids BIGINT[] NOT NULL DEFAULT '{}'::BIGINT[],
    last_event_sent_nid BIGINT NOT NULL DEFAULT 0,
    state_snapshot_nid BIGINT NOT NULL DEFAULT 0,
    room_version TEXT NOT NULL
);

CREATE SEQUENCE IF NOT EXISTS roomserver_event_type_nid_seq START 65536;
CREATE TABLE IF NOT EXISTS roomserver_event_types (
    event_type_nid BIGINT PRIMARY KEY DEFAULT nextval('roomserver_event_type_nid_seq'),
    event_type TEXT NOT NULL CONSTRAINT roomserver_event_type_unique UNIQUE
);
INSERT INTO roomserver_event_types (event_type_nid, event_type) VALUES
    (1, 'm.room.create'), (2, 'm.room.power_levels'), (3, 'm.room.join_rules'),
    (4, 'm.room.third_party_invite'), (5, 'm.room.member'), (6, 'm.room.redaction'),
    (7, 'm.room.history_visibility') ON CONFLICT DO NOTHING;

CREATE SEQUENCE IF NOT EXISTS roomserver_event_state_key_nid_seq START 65536;
CREATE TABLE IF NOT EXISTS roomserver_event_state_keys (
    event_state_key_nid BIGINT PRIMARY KEY DEFAULT nextval('roomserver_event_state_key_nid_seq'),
    event_state_key TEXT NOT NULL CONSTRAINT roomserver_event_state_key_unique UNIQUE
);
INSERT INTO roomserver_event_state_keys (event_state_key_nid, event_state_key) VALUES
    (1, '') ON CONFLICT DO NOTHING;

CREATE SEQUENCE IF NOT EXISTS roomserver_event_nid_seq;
CREATE TABLE IF NOT EXISTS roomserver_events (
    event_nid BIGINT PRIMARY KEY DEFAULT nextval('roomserver_event_nid_seq'),
    room_nid BIGINT NOT NULL,
    event_type_nid BIGINT NOT NULL,
    event_state_key_nid BIGINT NOT NULL,
    sent_to_output BOOLEAN NOT NULL DEFAULT FALSE,
    state_snapshot_nid BIGINT NOT NULL DEFAULT 0,
    depth BIGINT NOT NULL,
    event_id TEXT NOT NULL CONSTRAINT roomserver_event_id_unique UNIQUE,
    auth_event_nids BIGINT[] NOT NULL,
    is_rejected BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS roomserver_events_memberships_idx
    ON roomserver_events (room_nid, event_state_key_nid) WHERE (event_type_nid = 5);
CREATE INDEX IF NOT EXISTS roomserver_event_event_type_nid_idx
    ON roomserver_events (event_type_nid);
CREATE INDEX IF NOT EXISTS roomserver_event_state_key_nid_idx
    ON roomserver_events (event_state_key_nid);

CREATE TABLE IF NOT EXISTS roomserver_event_json (
    event_nid BIGINT NOT NULL PRIMARY KEY,
    event_json TEXT NOT NULL
);
"""


def split_user_id(user_id: str) -> tuple[str, str]:
    """``@alice:example.org`` → (``alice``, ``example.org``), as Dendrite stores users."""
    localpart, _, server_name = user_id[1:].partition(":")
    return localpart, server_name


async def _add_device(conn: Conn, user_id: str, device_id: str, token: str) -> int:
    localpart, server_name = split_user_id(user_id)
    now = int(time.time() * 1000)
    # Dendrite replaces a device's token by deleting and re-inserting its row.
    await conn.execute(
        "DELETE FROM userapi_devices WHERE localpart = $1 AND server_name = $2 AND device_id = $3",
        localpart,
        server_name,
        device_id,
    )
    return int(
        await conn.fetchval(
            "INSERT INTO userapi_devices (access_token, device_id, localpart, server_name, "
            "created_ts, last_seen_ts) VALUES ($1, $2, $3, $4, $5, $5) RETURNING session_id",
            token,
            device_id,
            localpart,
            server_name,
            now,
        )
    )


async def _remove_device(conn: Conn, user_id: str, device_id: str) -> None:
    localpart, server_name = split_user_id(user_id)
    await conn.execute(
        "DELETE FROM userapi_devices WHERE localpart = $1 AND server_name = $2 AND device_id = $3",
        localpart,
        server_name,
        device_id,
    )


async def _put_account_data(
    conn: Conn, user_id: str, room_id: str, data_type: str, content: str
) -> None:
    localpart, server_name = split_user_id(user_id)
    await conn.execute(
        "INSERT INTO userapi_account_datas (localpart, server_name, room_id, type, content) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (localpart, server_name, room_id, type) "
        "DO UPDATE SET content = excluded.content",
        localpart,
        server_name,
        room_id,
        data_type,
        content,
    )


async def _nid(conn: Conn, table: str, column: str, value: str) -> int:
    nid_column = {
        "roomserver_event_types": "event_type_nid",
        "roomserver_event_state_keys": "event_state_key_nid",
    }[table]
    found = await conn.fetchval(f"SELECT {nid_column} FROM {table} WHERE {column} = $1", value)
    if found is not None:
        return int(found)
    return int(
        await conn.fetchval(
            f"INSERT INTO {table} ({column}) VALUES ($1) RETURNING {nid_column}", value
        )
    )


async def _add_event(conn: Conn, event: dict[str, Any], room_version: str) -> int:
    room_nid = await conn.fetchval(
        "SELECT room_nid FROM roomserver_rooms WHERE room_id = $1", event["room_id"]
    )
    if room_nid is None:
        room_nid = await conn.fetchval(
            "INSERT INTO roomserver_rooms (room_id, room_version) VALUES ($1, $2) "
            "RETURNING room_nid",
            event["room_id"],
            room_version,
        )
    type_nid = await _nid(conn, "roomserver_event_types", "event_type", event["type"])
    state_key = event.get("state_key")
    key_nid = (
        0
        if state_key is None
        else await _nid(conn, "roomserver_event_state_keys", "event_state_key", state_key)
    )
    body = {k: v for k, v in event.items() if k != "event_id"}
    event_nid = int(
        await conn.fetchval(
            "INSERT INTO roomserver_events (room_nid, event_type_nid, event_state_key_nid, "
            "event_id, auth_event_nids, depth) VALUES ($1, $2, $3, $4, '{}', $5) "
            "RETURNING event_nid",
            room_nid,
            type_nid,
            key_nid,
            event["event_id"],
            int(event.get("depth", 1)),
        )
    )
    await conn.execute(
        "INSERT INTO roomserver_event_json (event_nid, event_json) VALUES ($1, $2)",
        event_nid,
        orjson.dumps(body).decode(),
    )
    return event_nid


@dataclass(frozen=True)
class DendriteDatabase:
    """A database holding Dendrite's tables; the methods write as Dendrite would."""

    url: str

    async def _write(self, op: Any, *args: Any) -> Any:
        async with open_postgres(self.url, readers=1) as engine:
            return await engine.write(op, *args)

    async def add_device(self, user_id: str, device_id: str, token: str) -> int:
        """Log a device in (replacing its token if it exists); returns its session ID."""
        return int(await self._write(_add_device, user_id, device_id, token))

    async def remove_device(self, user_id: str, device_id: str) -> None:
        """Log a device out: its token stops existing."""
        await self._write(_remove_device, user_id, device_id)

    async def put_account_data(
        self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]
    ) -> None:
        """Store account data content (``room_id`` "" for global account data)."""
        await self._write(
            _put_account_data, user_id, room_id, data_type, orjson.dumps(content).decode()
        )

    async def add_event(self, event: dict[str, Any], room_version: str = "10") -> int:
        """Store an event (with its ``event_id``) in the room server's tables; its NID."""
        return int(await self._write(_add_event, event, room_version))


async def _create(name: str) -> None:
    await _pg_admin(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(USERAPI_SCHEMA)
        await conn.execute(ROOMSERVER_SCHEMA)
    finally:
        await conn.close()


@pytest.fixture
def dendrite_db() -> Iterator[DendriteDatabase]:
    """A fresh PostgreSQL database with Dendrite's tables (needs TRIO_SYNC_TEST_POSTGRES)."""
    if not PG_DSN:
        pytest.fail("Dendrite's tables need PostgreSQL: set TRIO_SYNC_TEST_POSTGRES")
    name = f"trio_sync_dendrite_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create(name))
    try:
        yield DendriteDatabase(_pg_url(name))
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
