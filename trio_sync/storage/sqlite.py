"""SQLite engine: WAL mode, one writer connection, a few reader connections.

Every operation is one hop to a worker thread, where its coroutine is driven to
completion without ever suspending (the connection's methods are synchronous underneath).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import orjson
import trio

from ..errors import StorageError
from ..observability.metrics import DB_OPERATION
from .engine import Array, Op, P, Query, Row, T

_READ_TIME = DB_OPERATION.labels("sqlite", "read")
_WRITE_TIME = DB_OPERATION.labels("sqlite", "write")

_PLACEHOLDER = re.compile(r"\$(\d+)")
_ANY = re.compile(r"=\s*ANY\s*\(\s*\$(\d+)\s*\)", re.IGNORECASE)


@lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    sql = _ANY.sub(r"IN (SELECT value FROM json_each($\1))", sql)
    return _PLACEHOLDER.sub(r"?\1", sql)


def _params(args: Sequence[object]) -> tuple[object, ...]:
    return tuple(orjson.dumps(list(a.items)).decode() if isinstance(a, Array) else a for a in args)


class _SqliteConn:
    __slots__ = ("_db", "statements")
    dialect = "sqlite"

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.statements = 0

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        self.statements += 1
        rows: list[Row] = self._db.execute(_translate(sql), _params(args)).fetchall()
        return rows

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        self.statements += 1
        row: Row | None = self._db.execute(_translate(sql), _params(args)).fetchone()
        return row

    async def fetchval(self, sql: str, *args: object) -> Any:
        self.statements += 1
        row = self._db.execute(_translate(sql), _params(args)).fetchone()
        return None if row is None else row[0]

    async def fetch_many(self, queries: Sequence[Query]) -> list[Sequence[Row]]:
        return [await self.fetch(q.sql, *q.args) for q in queries]

    async def execute(self, sql: str, *args: object) -> None:
        self.statements += 1
        self._db.execute(_translate(sql), _params(args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.statements += 1
        self._db.executemany(_translate(sql), (_params(r) for r in rows))

    async def notify(self, channel: str) -> None:
        pass  # watches see the commit through PRAGMA data_version and the counter row


class _SqliteChangeWatch:
    """``PRAGMA data_version`` on a connection of its own, then the counter row.

    ``data_version`` moves whenever another connection (of this process or another)
    commits anything; only then is the counter read, so the common call is one pragma
    that reads the WAL index in shared memory — far cheaper than the hop to a worker
    thread a query would cost, so it runs on the calling (Trio) thread.
    """

    def __init__(self, path: str, counter_sql: str) -> None:
        self._db = _connect(path, read_only=True)
        self._db.execute("PRAGMA busy_timeout=0")
        self._sql = counter_sql
        self._version: object = None
        self._counter: object = None

    def changed(self) -> bool:
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version == self._version:
                return False
            self._version = version
            counter = self._db.execute(self._sql).fetchone()
        except sqlite3.Error:
            self._version = None  # cannot tell: assume a change, and look again next time
            return True
        moved = bool(counter != self._counter)
        self._counter = counter
        return moved

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    def close(self) -> None:
        self._db.close()


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        value: T = stop.value
        return value
    coro.close()
    raise RuntimeError("a storage operation awaited something other than its connection")


def _transaction(
    db: sqlite3.Connection, begin: str, op: Op[..., T], args: Any, kwargs: Any
) -> tuple[T, int]:
    """Run ``op`` in a transaction; its result and how many statements it issued."""
    conn = _SqliteConn(db)
    try:
        db.execute(begin)
        try:
            result = _drive(op(conn, *args, **kwargs))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result, conn.statements
    except sqlite3.Error as exc:
        raise StorageError(f"sqlite: {exc}") from exc


def _connect(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA cache_size=-65536")
    if read_only:
        # Reads must not write, exactly as PostgreSQL's READ ONLY transactions refuse to.
        db.execute("PRAGMA query_only=ON")
    return db


class SqliteEngine:
    """The embedded default. ``path`` is a file path (``:memory:`` is not supported)."""

    name = "sqlite"

    def __init__(self, path: str, readers: int = 3) -> None:
        self._path = path
        self._writer = _connect(path)
        self._write_lock = trio.Lock()
        self._readers = [_connect(path, read_only=True) for _ in range(readers)]
        self._reader_slots = trio.Semaphore(readers)
        self._limiter = trio.CapacityLimiter(readers + 1)
        self.statements = 0
        self._watches: list[_SqliteChangeWatch] = []

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        async with self._reader_slots:
            db = self._readers.pop()
            try:
                result, n = await trio.to_thread.run_sync(
                    _transaction, db, "BEGIN", op, args, kwargs, limiter=self._limiter
                )
            finally:
                self._readers.append(db)
                _READ_TIME.observe(time.perf_counter() - started)
            # Counted here, in Trio's thread: exact with several reader threads.
            self.statements += n
            return result

    async def read_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # A transaction costs nothing extra here.
        return await self.read(op, *args, **kwargs)

    # A transaction costs nothing extra here.
    read_settled = read

    async def write_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        # A transaction costs nothing extra here.
        return await self.write(op, *args, **kwargs)

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            async with self._write_lock:
                result, n = await trio.to_thread.run_sync(
                    _transaction,
                    self._writer,
                    "BEGIN IMMEDIATE",
                    op,
                    args,
                    kwargs,
                    limiter=self._limiter,
                )
                self.statements += n
                return result
        finally:
            _WRITE_TIME.observe(time.perf_counter() - started)

    async def run_script(self, sql: str) -> None:
        def run() -> None:
            try:
                self._writer.executescript(f"BEGIN IMMEDIATE;\n{sql}\nCOMMIT;")
            except sqlite3.Error as exc:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise StorageError(f"sqlite: {exc}") from exc

        async with self._write_lock:
            await trio.to_thread.run_sync(run, limiter=self._limiter)

    def change_watch(self, channel: str, counter_sql: str) -> _SqliteChangeWatch:
        watch = _SqliteChangeWatch(self._path, counter_sql)
        self._watches.append(watch)
        return watch

    def close(self) -> None:
        for watch in self._watches:
            watch.close()
        for db in [self._writer, *self._readers]:
            db.close()


@asynccontextmanager
async def open_sqlite(path: str) -> AsyncIterator[SqliteEngine]:
    """Open (creating if needed) the SQLite database at ``path``; close it on exit."""
    try:
        engine = await trio.to_thread.run_sync(SqliteEngine, path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open SQLite database {path!r}: {exc}") from exc
    try:
        yield engine
    finally:
        engine.close()
