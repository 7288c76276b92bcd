"""``together``: independent reads give the answers they give alone, and on PostgreSQL
each round of their queries is one statement."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from trio_sync.storage import Array, Conn, Engine
from trio_sync.storage.rounds import together


async def _table(conn: Conn) -> None:
    await conn.execute("CREATE TABLE things (id BIGINT PRIMARY KEY, name TEXT, flag BOOLEAN)")
    await conn.executemany(
        "INSERT INTO things (id, name, flag) VALUES ($1, $2, $3)",
        [(i, None if i % 5 == 0 else f"n{i}", i % 2 == 0) for i in range(1, 31)],
    )


async def _newest(conn: Conn, limit: int) -> list[tuple[Any, ...]]:
    """Two queries, the second depending on the first."""
    rows = await conn.fetch("SELECT id FROM things ORDER BY id DESC LIMIT $1", limit)
    ids = [int(r[0]) for r in rows]
    named = await conn.fetch(
        "SELECT id, name, flag FROM things WHERE id = ANY($1) AND (name IS NULL OR name <> $2) "
        "ORDER BY id DESC",
        Array(ids),
        "n29",
    )
    return [tuple(r[0:3]) for r in named]


async def _same_param_twice(conn: Conn, low: int) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM things WHERE id >= $1 AND id < $1 + $2 ORDER BY id", low, 3
    )
    return [int(r[0]) for r in rows]


async def _row_and_value(conn: Conn) -> tuple[Any, ...]:
    missing = await conn.fetchrow("SELECT id FROM things WHERE id = $1", 999)
    count = await conn.fetchval("SELECT COUNT(*) FROM things WHERE flag = $1", True)
    none = await conn.fetchval("SELECT id FROM things WHERE id < $1", 0)
    return (missing, int(count), none)


async def _no_query(conn: Conn) -> str:
    return "memory"


def _reads() -> list[Any]:
    return [
        lambda c: _newest(c, 4),
        lambda c: _same_param_twice(c, 7),
        _no_query,
        _row_and_value,
        lambda c: _newest(c, 2),
    ]


async def test_reads_together_answer_as_alone_in_one_statement_a_round(engine: Engine) -> None:
    await engine.write(_table)

    async def alone(conn: Conn) -> list[Any]:
        return [await read(conn) for read in _reads()]

    expected = await engine.read(alone)
    assert expected == [
        [(30, None, True), (28, "n28", True), (27, "n27", False)],
        [7, 8, 9],
        "memory",
        (None, 15, None),
        [(30, None, True)],
    ]
    before = engine.statements
    got = await engine.read(lambda conn: together(conn, _reads()))
    assert got == expected
    # Eight queries; the longest read has three in a row, so three rounds.
    queries = 2 + 1 + 3 + 2
    rounds = 3
    assert engine.statements - before == (rounds if engine.name == "postgres" else queries)


async def test_reads_together_answer_the_same_every_time(engine: Engine) -> None:
    """On PostgreSQL the rows of the query that returned the most last time come as one
    array per column, the others as records: the answers are the same either way, rows
    with NULLs and empty results included."""
    await engine.write(_table)

    async def above(conn: Conn, low: int) -> list[tuple[Any, ...]]:
        rows = await conn.fetch(
            "SELECT id, name, flag FROM things WHERE id > $1 ORDER BY id DESC", low
        )
        return [tuple(r[0:3]) for r in rows]

    def reads(low: int) -> list[Any]:
        return [*_reads(), lambda c: above(c, low)]

    everything = [(i, None if i % 5 == 0 else f"n{i}", i % 2 == 0) for i in range(30, 0, -1)]
    alone = await engine.read(lambda conn: together(conn, reads(0)[-1:]))
    assert alone == [everything]
    first = await engine.read(lambda conn: together(conn, reads(0)))
    assert first[-1] == everything
    assert first[0] == [(30, None, True), (28, "n28", True), (27, "n27", False)]
    assert first[3] == (None, 15, None)
    again = await engine.read(lambda conn: together(conn, reads(0)))
    assert again == first
    none_left = await engine.read(lambda conn: together(conn, reads(100)))
    assert none_left == [*first[:-1], []]
    assert await engine.read(lambda conn: together(conn, reads(25))) == [
        *first[:-1],
        everything[:5],
    ]


async def test_nested_reads_join_the_outer_round(engine: Engine) -> None:
    await engine.write(_table)

    async def inner(conn: Conn) -> list[Any]:
        return await together(conn, [lambda c: _newest(c, 3), lambda c: _same_param_twice(c, 1)])

    before = engine.statements
    got = await engine.read(lambda conn: together(conn, [inner, lambda c: _newest(c, 1)]))
    assert got == [[[(30, None, True), (28, "n28", True)], [1, 2, 3]], [(30, None, True)]]
    assert engine.statements - before == (2 if engine.name == "postgres" else 5)


async def test_a_failing_read_closes_the_others(engine: Engine) -> None:
    await engine.write(_table)
    closed: list[str] = []

    async def patient(conn: Conn) -> None:
        try:
            await conn.fetch("SELECT 1")
            await conn.fetch("SELECT 2")
        finally:
            closed.append("patient")

    async def failing(conn: Conn) -> None:
        await conn.fetch("SELECT 1")
        raise LookupError("no such thing")

    with pytest.raises(LookupError):
        await engine.read(lambda conn: together(conn, [patient, failing]))
    assert closed == ["patient"]


async def test_reads_together_cannot_write_or_wait(engine: Engine) -> None:
    await engine.write(_table)

    async def writes(conn: Conn) -> None:
        await conn.execute("DELETE FROM things")

    async def waits(conn: Conn) -> None:
        await asyncio.sleep(0)  # anything but one of the connection's queries

    for bad in (writes, waits):
        with pytest.raises(TypeError):
            await engine.read(lambda conn, bad=bad: together(conn, [bad]))
    rows: Sequence[Any] = await engine.read(lambda c: c.fetch("SELECT id FROM things"))
    assert len(rows) == 30
