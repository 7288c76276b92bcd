"""Independent reads of one operation, sent to the server together, round by round.

A ``/sync`` response is filled by several providers, each an ordinary sequential
coroutine that awaits its own queries. Run one after the other, they cost one round trip
per query: nothing on SQLite (the queries run in the operation's own thread), about a
tenth of a millisecond each on PostgreSQL. :func:`together` runs such coroutines in
rounds instead: each round, every coroutine runs until it awaits its next query (or
finishes), and the round's queries go to the server in one :meth:`Conn.fetch_many` — on
PostgreSQL one statement, its parts each a query's rows collected into an array.

The coroutines see a connection whose ``fetch``/``fetchrow``/``fetchval`` give them the
same answers as the real one would, from the same snapshot; anything else they await is
refused (:class:`TypeError`), and so are writes. Within a round, coroutines resume in the
order they were given, so what they add to a shared response keeps that order round by
round. ``together`` may be nested: an inner one's round becomes part of the outer round.

Cancellation: ``together`` suspends only in ``fetch_many``; a cancellation or error there
closes every unfinished coroutine and propagates, as does an error raised by any of them
(the others are closed first).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from typing import Any

from .engine import Conn, Query, Row


class _Wanted:
    """What a coroutine run by :func:`together` yields: the queries it waits for."""

    __slots__ = ("queries",)

    def __init__(self, queries: Sequence[Query]) -> None:
        self.queries = queries

    def __await__(self) -> Generator[_Wanted, list[Sequence[Row]], list[Sequence[Row]]]:
        return (yield self)


class _RoundConn:
    """The connection the coroutines of :func:`together` see."""

    __slots__ = ("dialect",)
    dialect: str

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    async def fetch_many(self, queries: Sequence[Query]) -> list[Sequence[Row]]:
        return await _Wanted(queries)

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        return (await _Wanted([Query(sql, args)]))[0]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: object) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: object) -> None:
        raise TypeError("reads run together cannot write")

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        raise TypeError("reads run together cannot write")

    async def notify(self, channel: str) -> None:
        raise TypeError("reads run together cannot write")


Read = Callable[[Conn], Coroutine[Any, Any, Any]]


async def together(conn: Conn, reads: Sequence[Read]) -> list[Any]:
    """Run ``reads`` (each called with a connection of its own kind) in rounds, their
    queries of a round in one ``conn.fetch_many``; return their results in order."""
    inner = _RoundConn(conn.dialect)
    results: list[Any] = [None] * len(reads)
    waiting: list[tuple[int, Coroutine[Any, Any, Any], _Wanted]] = []

    def step(i: int, coro: Coroutine[Any, Any, Any], answer: list[Sequence[Row]] | None) -> None:
        try:
            wanted = coro.send(answer)
        except StopIteration as done:
            results[i] = done.value
            return
        if not isinstance(wanted, _Wanted):
            coro.close()
            raise TypeError(f"a read run together awaited {wanted!r}, not a query")
        waiting.append((i, coro, wanted))

    coros = [read(inner) for read in reads]
    try:
        for i, coro in enumerate(coros):
            step(i, coro, None)
        while waiting:
            round_, waiting = waiting, []
            queries = [q for _, _, wanted in round_ for q in wanted.queries]
            rows = await conn.fetch_many(queries)
            start = 0
            for i, coro, wanted in round_:
                end = start + len(wanted.queries)
                step(i, coro, rows[start:end])
                start = end
    finally:
        for coro in coros:
            coro.close()  # a no-op for those that finished
    return results
