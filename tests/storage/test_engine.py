"""The engine contract both backends promise: transactions, ``= ANY``, snapshots, errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio_asyncio

from trio_sync.storage import Array, Conn, Engine, StorageError, open_engine
from trio_sync.storage.postgres import open_postgres

from ..conftest import PG_DSN
from .support import query


async def _put(conn: Conn, source: str, position: int) -> None:
    await conn.execute(
        "INSERT INTO ingest_offsets (source, position) VALUES ($1, $2)", source, position
    )


async def _put_many(conn: Conn, rows: list[tuple[str, int]]) -> None:
    await conn.executemany("INSERT INTO ingest_offsets (source, position) VALUES ($1, $2)", rows)


async def _offsets(engine: Engine) -> dict[str, int]:
    rows = await query(engine, "SELECT source, position FROM ingest_offsets")
    return {source: int(position) for source, position in rows}


class Gate:
    """Holds a storage operation in the middle of its transaction until released.

    SQLite runs an operation in a worker thread, PostgreSQL inside asyncio on the Trio
    thread; either way the operation calls :meth:`pause` and the test sees ``reached``.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.reached = trio.Event()
        self.proceed = trio.Event()

    async def pause(self) -> None:
        if self.backend == "sqlite":
            trio.from_thread.run_sync(self.reached.set)
            trio.from_thread.run(self.proceed.wait)
        else:
            self.reached.set()
            await trio_asyncio.trio_as_aio(self.proceed.wait)()


# --- transactions ---------------------------------------------------------------------


async def test_write_is_committed_and_survives_reopening(db_url: str) -> None:
    async with open_engine(db_url) as engine:
        await engine.write(_put, "a", 7)
        assert await _offsets(engine) == {"a": 7}
    async with open_engine(db_url) as engine:
        assert await _offsets(engine) == {"a": 7}


async def test_write_returns_the_operation_result(engine: Engine) -> None:
    async def op(conn: Conn, source: str, *, position: int) -> int:
        await _put(conn, source, position)
        return int(await conn.fetchval("SELECT COUNT(*) FROM ingest_offsets"))

    assert await engine.write(op, "a", position=1) == 1


async def test_exception_in_write_rolls_back_everything_it_wrote(engine: Engine) -> None:
    await engine.write(_put, "kept", 1)

    class Boom(Exception):
        pass

    async def op(conn: Conn) -> None:
        await _put(conn, "lost-1", 1)
        await _put_many(conn, [("lost-2", 2), ("lost-3", 3)])
        await conn.execute("UPDATE ingest_offsets SET position = 99 WHERE source = 'kept'")
        raise Boom

    with pytest.raises(Boom):
        await engine.write(op)
    assert await _offsets(engine) == {"kept": 1}
    # The engine is still usable afterwards.
    await engine.write(_put, "after", 2)
    assert await _offsets(engine) == {"kept": 1, "after": 2}


async def test_failing_statement_rolls_back_earlier_statements(engine: Engine) -> None:
    async def op(conn: Conn) -> None:
        await _put(conn, "lost", 1)
        await conn.execute("INSERT INTO no_such_table (x) VALUES ($1)", 1)

    with pytest.raises(StorageError):
        await engine.write(op)
    assert await _offsets(engine) == {}


async def test_constraint_violation_is_a_storage_error(engine: Engine) -> None:
    await engine.write(_put, "a", 1)
    with pytest.raises(StorageError):
        await engine.write(_put, "a", 2)
    assert await _offsets(engine) == {"a": 1}


async def test_bad_sql_is_a_storage_error_and_the_engine_recovers(engine: Engine) -> None:
    async def bad_read(conn: Conn) -> Any:
        return await conn.fetch("SELEC nonsense FROM nowhere")

    async def bad_write(conn: Conn) -> None:
        await conn.execute("UPDATE no_such_table SET x = 1")

    for _ in range(5):  # more failures than the engine has connections
        with pytest.raises(StorageError):
            await engine.read(bad_read)
        with pytest.raises(StorageError):
            await engine.write(bad_write)
    await engine.write(_put, "a", 1)
    assert await _offsets(engine) == {"a": 1}


async def test_missing_rows_read_as_none(engine: Engine) -> None:
    async def op(conn: Conn) -> tuple[Any, Any, Any]:
        sql = "SELECT position FROM ingest_offsets WHERE source = $1"
        return (
            await conn.fetchrow(sql, "nope"),
            await conn.fetchval(sql, "nope"),
            await conn.fetch(sql, "nope"),
        )

    row, value, rows = await engine.read(op)
    assert row is None
    assert value is None
    assert list(rows) == []


async def test_rows_are_indexable_by_position_and_name(engine: Engine) -> None:
    await engine.write(_put, "a", 5)

    async def op(conn: Conn) -> tuple[Any, ...]:
        row = await conn.fetchrow("SELECT source, position FROM ingest_offsets")
        assert row is not None
        return row[0], row["source"], row[1], row["position"]

    assert await engine.read(op) == ("a", "a", 5, 5)


# --- = ANY($n) with Array -------------------------------------------------------------


async def test_any_matches_exactly_the_listed_strings(engine: Engine) -> None:
    tricky = ['quo"te', "back\\slash", "ünïcode ☃", "it's", "a,b", "$1"]
    await engine.write(_put_many, [(s, i) for i, s in enumerate([*tricky, "x", "y"])])

    async def op(conn: Conn, wanted: list[str]) -> set[str]:
        rows = await conn.fetch(
            "SELECT source FROM ingest_offsets WHERE source = ANY($1)", Array(wanted)
        )
        return {row[0] for row in rows}

    assert await engine.read(op, [*tricky, "not-there"]) == set(tricky)
    assert await engine.read(op, ["y"]) == {"y"}
    assert await engine.read(op, []) == set()


async def test_any_matches_integers_and_combines_with_other_parameters(engine: Engine) -> None:
    await engine.write(_put_many, [(f"s{i}", i) for i in range(10)])

    async def op(conn: Conn, positions: list[int], above: int) -> list[str]:
        rows = await conn.fetch(
            "SELECT source FROM ingest_offsets WHERE position > $2 AND position = ANY($1) "
            "ORDER BY position",
            Array(positions),
            above,
        )
        return [row[0] for row in rows]

    assert await engine.read(op, [1, 4, 7, 9, 42], 3) == ["s4", "s7", "s9"]
    assert await engine.read(op, [], -1) == []


async def test_any_in_update_changes_only_listed_rows(engine: Engine) -> None:
    await engine.write(_put_many, [("a", 1), ("b", 2), ("c", 3)])

    async def bump(conn: Conn, sources: list[str]) -> None:
        await conn.execute(
            "UPDATE ingest_offsets SET position = position + 100 WHERE source = ANY($1)",
            Array(sources),
        )

    await engine.write(bump, ["a", "c"])
    await engine.write(bump, [])
    assert await _offsets(engine) == {"a": 101, "b": 2, "c": 103}


async def test_write_one_commits_its_one_statement_or_nothing(engine: Engine) -> None:
    await engine.write_one(_put, "one", 1)
    assert await _offsets(engine) == {"one": 1}
    with pytest.raises(StorageError):
        await engine.write_one(_put, "one", 2)
    await engine.write_one(_put, "two", 2)  # the engine goes on working
    assert await _offsets(engine) == {"one": 1, "two": 2}


# --- reads and concurrency ------------------------------------------------------------


async def test_read_sees_every_committed_write(engine: Engine) -> None:
    for i in range(20):
        await engine.write(_put, f"s{i}", i)
        assert len(await _offsets(engine)) == i + 1


async def _counts_around_a_commit(engine: Engine, read: Any) -> list[int]:
    """What ``read`` (``engine.read`` or a sibling) counts in two statements, between
    which a write commits."""
    gate = Gate(engine.name)
    seen: list[int] = []

    async def count_twice(conn: Conn) -> None:
        seen.append(int(await conn.fetchval("SELECT COUNT(*) FROM ingest_offsets")))
        await gate.pause()
        seen.append(int(await conn.fetchval("SELECT COUNT(*) FROM ingest_offsets")))

    await engine.write(_put, "before", 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, count_twice)
        await gate.reached.wait()
        await engine.write(_put, "during", 2)  # commits while the read is half done
        gate.proceed.set()
    return seen


async def test_read_sees_one_snapshot_while_a_write_commits(engine: Engine) -> None:
    assert await _counts_around_a_commit(engine, engine.read) == [1, 1]
    assert len(await _offsets(engine)) == 2


async def test_read_settled_sends_no_transaction_where_one_costs_round_trips(
    engine: Engine,
) -> None:
    """``read_settled`` is for reads of rows that no longer change (a ``/sync`` bounded by
    its token): on PostgreSQL it sends no BEGIN or COMMIT, so each statement is a snapshot
    of its own and sees what committed before it; on SQLite it is a snapshot read."""
    seen = await _counts_around_a_commit(engine, engine.read_settled)
    assert seen == ([1, 2] if engine.name == "postgres" else [1, 1])
    if engine.name == "postgres":

        async def transactions(conn: Conn) -> set[int]:
            return {int(await conn.fetchval("SELECT pg_current_xact_id()::text")) for _ in "ab"}

        assert len(await engine.read_settled(transactions)) == 2
        assert len(await engine.read(transactions)) == 1


async def test_cancelled_write_is_committed_whole_or_not_at_all(engine: Engine) -> None:
    gate = Gate(engine.name)
    rows = [(f"s{i}", i) for i in range(50)]

    async def op(conn: Conn) -> None:
        await _put_many(conn, rows[:25])
        await gate.pause()
        await _put_many(conn, rows[25:])

    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def writer() -> None:
            with scope:
                await engine.write(op)

        nursery.start_soon(writer)
        await gate.reached.wait()
        scope.cancel()
        gate.proceed.set()
    assert len(await _offsets(engine)) in (0, 50)
    # Nothing is left locked or half-open: the engine goes on working.
    await engine.write(_put, "after", 1)
    assert "after" in await _offsets(engine)


async def test_concurrent_writes_do_not_lose_updates(engine: Engine) -> None:
    await engine.write(_put, "counter", 0)

    async def increment(conn: Conn) -> None:
        value = await conn.fetchval("SELECT position FROM ingest_offsets WHERE source = 'counter'")
        await conn.execute(
            "UPDATE ingest_offsets SET position = $1 WHERE source = 'counter'", int(value) + 1
        )

    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(engine.write, increment)
    assert await _offsets(engine) == {"counter": 30}


async def test_many_concurrent_reads_all_complete(engine: Engine) -> None:
    await engine.write(_put_many, [(f"s{i}", i) for i in range(5)])
    results: list[int] = []

    async def count(conn: Conn) -> int:
        return int(await conn.fetchval("SELECT COUNT(*) FROM ingest_offsets"))

    async def reader() -> None:
        results.append(await engine.read(count))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(reader)
    assert results == [5] * 40


if PG_DSN:

    @pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
    async def test_a_read_returns_before_its_commit_and_its_connection_waits_for_it(
        engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A PostgreSQL read hands back its rows before its COMMIT is answered. With one
        reader connection, every read comes straight after the last one's COMMIT was
        sent: the connection must wait for it (asyncpg refuses a second operation on a
        busy connection, which the engine would log as a lost connection and retry)."""
        dbname = db_url.rpartition("/")[2]

        async def count(conn: Conn) -> int:
            return int(await conn.fetchval("SELECT COUNT(*) FROM ingest_offsets"))

        caplog.set_level(logging.WARNING)
        async with open_postgres(db_url, readers=1) as one:
            for i in range(10):
                await one.write(_put, f"s{i}", i)
                for _ in range(5):
                    assert await one.read(count) == i + 1
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

        # Nor does a read leave its transaction open for longer than its COMMIT takes.
        async def open_transactions(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
                    dbname,
                )
            )

        for _ in range(10):
            await engine.read(count)
        with trio.fail_after(10):
            while await engine.read_one(open_transactions):  # noqa: ASYNC110
                await trio.sleep(0.01)


# --- opening --------------------------------------------------------------------------


async def test_unsupported_url_is_a_storage_error(db_url: str) -> None:
    rest = db_url.split(":", 1)[1]
    with pytest.raises(StorageError, match="unsupported"):
        async with open_engine("mysql:" + rest):
            pass
