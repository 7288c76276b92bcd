"""Versioned migrations: applied once, recorded, atomic per file; the files are found."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson
import pytest
import trio

from trio_sync.storage import Conn, Engine, StorageError, migrate, open_engine
from trio_sync.storage import migrations as migrations_module
from trio_sync.storage.migrations import migration_files, sql_dir
from trio_sync.tokens import StreamToken

from .support import query

TABLES = (
    "streams",
    "events",
    "room_state",
    "invites",
    "ingest_offsets",
    "ingest_rejects",
    "devices",
    "filters",
    "account_data",
    "receipts",
    "device_inbox",
    "device_txns",
    "key_changes",
    "device_key_counts",
    "unread_counts",
    "presence",
    "device_presence",
)


async def _versions(engine: Engine) -> list[tuple[int, int]]:
    rows = await query(engine, "SELECT version, applied_at FROM schema_version ORDER BY version")
    return [(int(v), int(t)) for v, t in rows]


async def _table_exists(engine: Engine, table: str) -> bool:
    async def op(conn: Conn) -> bool:
        try:
            await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        except Exception:
            return False
        return True

    try:
        return await engine.read(op)
    except StorageError:  # PostgreSQL aborts the transaction on the failed statement
        return False


async def test_migrate_command_finds_the_sql_files_from_any_directory(
    db_url: str, tmp_path: Path
) -> None:
    directory = sql_dir()
    assert (directory / "001_initial.sql").is_file()
    files = migration_files()
    versions = [version for version, _ in files]
    assert versions[0] == 1
    assert versions == sorted(set(versions)), "migration versions must be unique and ordered"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "trio_sync.cli", "migrate", "--database", db_url]
    for _ in range(2):  # fails (non-zero exit) if the files are not found or re-applied
        await trio.run_process(command, cwd=elsewhere, capture_stdout=True, capture_stderr=True)
    async with open_engine(db_url) as engine:
        assert [v for v, _ in await _versions(engine)] == versions


async def test_fresh_database_gets_the_whole_schema(engine: Engine) -> None:
    versions = await _versions(engine)
    assert [v for v, _ in versions] == [v for v, _ in migration_files()]
    assert all(applied_at > 1_600_000_000_000 for _, applied_at in versions)  # milliseconds
    for table in TABLES:
        assert await _table_exists(engine, table), table
    streams = dict(await query(engine, "SELECT stream, position FROM streams"))
    # Every stream of the sync token, plus the numbering of rejected log messages.
    expected = {name: 0 for name in (*StreamToken.STREAMS, "reject")}
    assert {k: int(v) for k, v in streams.items()} == expected


async def test_reopening_applies_nothing_again_and_keeps_data(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        first = await _versions(engine)

        async def op(conn: Conn) -> None:
            await conn.execute("UPDATE streams SET position = 41 WHERE stream = 'pdu'")

        await engine.write(op)
    for _ in range(2):
        async with open_engine(db_url) as engine:
            assert await migrate(engine) == []
            assert await _versions(engine) == first
            assert await query(engine, "SELECT position FROM streams WHERE stream = 'pdu'") == [
                (41,)
            ]


async def test_a_database_at_the_latest_version_is_left_alone(engine: Engine) -> None:
    before = await _versions(engine)
    assert await migrate(engine) == []
    assert await migrate(engine) == []
    assert await _versions(engine) == before


@pytest.fixture
def migrations_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private migrations directory, starting with the real 001 (and junk to ignore)."""
    directory = tmp_path / "sql"
    directory.mkdir()
    shutil.copy(sql_dir() / "001_initial.sql", directory / "001_initial.sql")
    (directory / "README.md").write_text("not a migration")
    (directory / "002-Not_A_Migration.sql").write_text("THIS IS NOT SQL;")
    (directory / "003_notes.sql.bak").write_text("THIS IS NOT SQL;")
    monkeypatch.setattr(migrations_module, "sql_dir", lambda: directory)
    return directory


async def test_new_migration_files_are_applied_in_order_on_next_open(
    db_url: str, migrations_dir: Path
) -> None:
    async with open_engine(db_url) as engine:
        assert [v for v, _ in await _versions(engine)] == [1]
    (migrations_dir / "010_later.sql").write_text("INSERT INTO extra (note) VALUES ('from 010');")
    (migrations_dir / "002_extra.sql").write_text(
        "CREATE TABLE extra (note TEXT NOT NULL);\nINSERT INTO extra (note) VALUES ('from 002');"
    )
    async with open_engine(db_url) as engine:
        assert [v for v, _ in await _versions(engine)] == [1, 2, 10]
        assert await query(engine, "SELECT note FROM extra ORDER BY note") == [
            ("from 002",),
            ("from 010",),
        ]
    async with open_engine(db_url) as engine:  # and never again
        assert await query(engine, "SELECT COUNT(*) FROM extra") == [(2,)]


async def test_failing_migration_leaves_the_previous_version(
    engine: Engine, migrations_dir: Path
) -> None:
    (migrations_dir / "002_good.sql").write_text("CREATE TABLE good (x INTEGER);")
    (migrations_dir / "003_bad.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO no_such_table VALUES (1);"
    )
    with pytest.raises(StorageError):
        await migrate(engine)
    assert [v for v, _ in await _versions(engine)] == [1, 2]
    assert await _table_exists(engine, "good")
    assert not await _table_exists(engine, "half_done")
    # Once the file is fixed, the next start applies it.
    (migrations_dir / "003_bad.sql").write_text("CREATE TABLE half_done (x INTEGER);")
    assert await migrate(engine) == [3]
    assert await _table_exists(engine, "half_done")


async def test_stored_client_events_lose_federation_unsigned_fields(engine: Engine) -> None:
    """Events stored before client events were trimmed to the spec's ``unsigned`` keys get
    trimmed by migration 21; events with nothing to trim keep their bytes."""
    dirty = {
        "event_id": "$dirty",
        "type": "m.room.member",
        "unsigned": {
            "age_ts": 1,
            "invite_room_state": [{"type": "m.room.name"}],
            "prev_content": {"membership": "invite"},
            "replaces_state": "$before",
        },
    }
    bare = {"event_id": "$bare", "type": "m.room.message", "unsigned": {"age": 5}}
    clean = '{"event_id":"$clean","unsigned":{"replaces_state":"$x"}}'

    async def put(conn: Conn) -> None:
        for pos, (eid, text) in enumerate(
            (
                ("$dirty", orjson.dumps(dirty).decode()),
                ("$bare", orjson.dumps(bare).decode()),
                ("$clean", clean),
            ),
            start=1,
        ):
            await conn.execute(
                "INSERT INTO events (pos, event_id, room_id, type, sender, depth, "
                "origin_server_ts, room_version, client_json, pdu_json) "
                "VALUES ($1, $2, '!r:x', 't', '@u:x', 1, 1, '10', $3, '{}')",
                pos,
                eid,
                text,
            )
        await conn.execute("DELETE FROM schema_version WHERE version = 21")

    await engine.write(put)
    assert 21 in await migrate(engine)
    stored = dict(await query(engine, "SELECT event_id, client_json FROM events"))
    assert orjson.loads(stored["$dirty"])["unsigned"] == {
        "prev_content": {"membership": "invite"},
        "replaces_state": "$before",
    }
    assert "unsigned" not in orjson.loads(stored["$bare"])
    assert orjson.loads(stored["$bare"])["type"] == "m.room.message"
    assert stored["$clean"] == clean
