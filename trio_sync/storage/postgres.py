"""PostgreSQL engine: asyncpg, driven from Trio through the trio-asyncio bridge.

A whole storage operation crosses the bridge once: the operation's coroutine runs inside
asyncio against a pooled connection and its transaction, and only the result comes back.
Reads run in ``REPEATABLE READ READ ONLY`` transactions, so every query of an operation
sees one snapshot; ``read_one`` runs a single-statement operation without one (a statement
is its own snapshot), saving the BEGIN and COMMIT round trips, and so does
``read_settled`` for an operation of several statements that reads only what had settled
at positions its caller knows committed (``/sync``). A read's result goes back to its
caller as soon as its last query is answered: the COMMIT, which can change nothing it
read, follows on its own, and the connection is not used again before it is done.

A connection the server dropped (restart, ``pg_terminate_backend``, a network cut) is
noticed on its next use: it is thrown away, logged once (one warning line per lost
connection), and a read is run again, once, on a fresh connection — a read has no effect
to double. A write is not retried here: its caller decides (the ingest task retries whole
batches, which are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache, partial
from typing import Any

import asyncpg
import trio

from ..bridge import open_bridge, run_asyncio
from ..errors import StorageError
from ..observability.metrics import DB_OPERATION
from .engine import Array, Conn, Op, P, Query, Row, T

log = logging.getLogger(__name__)

_READ_TIME = DB_OPERATION.labels("postgres", "read")
_WRITE_TIME = DB_OPERATION.labels("postgres", "write")
#: Errors that mean the connection is gone (not that the statement failed).
_LOST = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    # The protocol state of a connection cut mid-operation ("another operation is in
    # progress"): the connection is unusable.
    asyncpg.exceptions.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


class ConnectionLost(StorageError):
    """The operation failed because its connection died (it was thrown away)."""


def _params(args: Sequence[object]) -> tuple[object, ...]:
    return tuple(list(a.items) if isinstance(a, Array) else a for a in args)


_PLACEHOLDER = re.compile(r"\$(\d+)")


#: What each query run in a combined statement returned the last time it returned rows:
#: its number of columns and of rows. Bounded: cleared when full.
_SEEN: dict[str, tuple[int, int]] = {}
_SEEN_MAX = 4096
#: Fewer rows than this are not worth a part of their own (:func:`combined`).
_COLUMNS_MIN_ROWS = 8


def combined(queries: Sequence[Query]) -> tuple[Query, list[int | None]]:
    """One statement returning one row that holds the rows of every query of
    ``queries``, and how they are laid out: for each query either its number of columns
    ``w``, its rows then being ``w`` columns of the row, each the array of one column's
    values, or ``None``, its rows being one column of the row, an array of records.

    Records cost PostgreSQL and asyncpg more to build and read than arrays of plain
    values, so the query that returned the most rows last time (at least
    ``_COLUMNS_MIN_ROWS``) comes as column arrays. Only one: each such part is a
    subquery in ``FROM``, and a ``FROM`` list of several makes the planner search their
    join orders, which costs more than it saves once a statement has a dozen parts. A
    query must have no array column: asyncpg reads no arrays inside records, and arrays
    of unequal lengths make no array of arrays. Each part keeps its query's row order
    (the order of a subquery holds through a plain scan and aggregate of it). The
    placeholders of each query are renumbered after those of the queries before it, so
    the SQL of a query must not contain ``$`` outside its placeholders.
    """
    args: list[object] = []
    widths: list[int | None] = [None] * len(queries)
    most = _COLUMNS_MIN_ROWS - 1
    for i, query in enumerate(queries):
        args.extend(query.args)
        width, rows = _SEEN.get(query.sql, (0, 0))
        if rows > most:
            most = rows
            widths = [None] * len(queries)
            widths[i] = width
    shapes = tuple((q.sql, len(q.args), w) for q, w in zip(queries, widths, strict=True))
    return Query(_combined_sql(shapes), tuple(args)), widths


@lru_cache(maxsize=256)
def _combined_sql(shapes: tuple[tuple[str, int, int | None], ...]) -> str:
    """The SQL of :func:`combined` for queries of these SQL texts, argument counts and
    widths: the same few combinations come back request after request."""
    columns: list[str] = []
    source = ""
    offset = 0
    for sql, n, width in shapes:
        inner = _shifted(sql, offset)
        if width is None:
            columns.append(f"ARRAY(SELECT q FROM ({inner}) AS q)")
        else:
            names = [f"c{k}" for k in range(width)]
            arrays = ", ".join(f"array_agg({c}) AS {c}" for c in names)
            source = f" FROM (SELECT {arrays} FROM ({inner}) AS q({', '.join(names)})) AS p"
            columns.extend(f"p.{c}" for c in names)
        offset += n
    return "SELECT " + ", ".join(columns) + source


def _split(row: Any, queries: Sequence[Query], widths: Sequence[int | None]) -> list[Any]:
    """The rows of each query from the row of :func:`combined`'s statement; what each
    query returned is noted for the next statement."""
    out: list[Any] = []
    at = 0
    for query, width in zip(queries, widths, strict=True):
        if width is None:
            rows = row[at]
            at += 1
            if rows:
                _note(query.sql, len(rows[0]), len(rows))
        else:
            columns = row[at : at + width]
            at += width
            rows = [] if columns[0] is None else list(zip(*columns, strict=True))
            _note(query.sql, width, len(rows))
        out.append(rows)
    return out


def _note(sql: str, width: int, rows: int) -> None:
    if len(_SEEN) >= _SEEN_MAX and sql not in _SEEN:
        _SEEN.clear()
    _SEEN[sql] = (width, rows)


def _shifted(sql: str, offset: int) -> str:
    if not offset:
        return sql
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


class _PgConn:
    __slots__ = ("_c", "_engine")
    dialect = "postgres"

    def __init__(self, c: Any, engine: PostgresEngine) -> None:
        self._c = c
        self._engine = engine

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        self._engine.statements += 1
        return await self._c.fetch(sql, *_params(args))  # type: ignore[no-any-return]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        self._engine.statements += 1
        return await self._c.fetchrow(sql, *_params(args))  # type: ignore[no-any-return]

    async def fetchval(self, sql: str, *args: object) -> Any:
        self._engine.statements += 1
        return await self._c.fetchval(sql, *_params(args))

    async def fetch_many(self, queries: Sequence[Query]) -> list[Sequence[Row]]:
        if len(queries) == 1:
            return [await self.fetch(queries[0].sql, *queries[0].args)]
        if not queries:
            return []
        together, widths = combined(queries)
        self._engine.statements += 1
        row = await self._c.fetchrow(together.sql, *_params(together.args))
        return _split(row, queries, widths)

    async def execute(self, sql: str, *args: object) -> None:
        self._engine.statements += 1
        await self._c.execute(sql, *_params(args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._engine.statements += 1
        await self._c.executemany(sql, [_params(r) for r in rows])

    async def notify(self, channel: str) -> None:
        # Delivered by the server when (and only if) the transaction commits.
        await self._c.execute("SELECT pg_notify($1, '')", channel)


def _set_event(event: trio.Event, *_: object) -> None:
    event.set()


class _PgChangeWatch:
    """``LISTEN channel`` on a connection of its own.

    A notification marks the watch changed. While that connection is down (before it
    first connects, or after it is lost) every call reports a change, since
    notifications may be missed then; it reconnects with backoff.
    """

    def __init__(self, dsn: str, channel: str) -> None:
        self._dsn = dsn
        self._channel = channel
        self._listening = False
        self._dirty = True

    def changed(self) -> bool:
        if not self._listening:
            return True
        dirty, self._dirty = self._dirty, False
        return dirty

    def _notified(self, *_: object) -> None:
        self._dirty = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = 0.05
        while True:
            lost = trio.Event()
            conn: Any = None
            try:
                conn = await run_asyncio(asyncpg.connect, self._dsn)
                conn.add_termination_listener(partial(_set_event, lost))
                await run_asyncio(conn.add_listener, self._channel, self._notified)
                self._dirty = True  # whatever happened before LISTEN was missed
                self._listening = True
                backoff = 0.05
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
                await lost.wait()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("change watch %s: %s; retrying", self._channel, exc)
            finally:
                self._listening = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


class _Slot:
    """One connection of the engine's own (no pool: a pool's acquire/reset costs two
    round trips per operation, and nothing here sets session state to reset)."""

    __slots__ = ("conn", "ending")

    def __init__(self) -> None:
        self.conn: Any = None
        #: The COMMIT of the connection's last read, while it is under way (asyncio).
        self.ending: Any = None


class PostgresEngine:
    """A writer connection and a few reader connections, used from Trio."""

    name = "postgres"

    def __init__(self, dsn: str, readers: int = 4, *, readonly: bool = False) -> None:
        self._dsn = dsn
        self._settings = {"default_transaction_read_only": "on"} if readonly else {}
        self._writer = _Slot()
        self._write_lock = trio.Lock()
        #: Free reader slots, the longest free first (its COMMIT is the likeliest done).
        self._readers = deque(_Slot() for _ in range(readers))
        self._reader_slots = trio.Semaphore(readers)
        #: Counted in the asyncio loop, which runs in Trio's thread.
        self.statements = 0

    async def _run(
        self, slot: _Slot, op: Op[..., T], args: Any, kwargs: Any, tx: tuple[str, bool] | None
    ) -> T:
        """Runs inside asyncio: (re)connect if needed, then the operation. A read-only
        transaction's COMMIT is left running as ``slot.ending``; the slot's next
        operation waits for it."""
        try:
            if slot.ending is not None:
                await slot.ending
            if slot.conn is None or slot.conn.is_closed():
                slot.conn = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings=self._settings
                )
            conn = slot.conn
            if tx is None:
                return await op(_PgConn(conn, self), *args, **kwargs)
            if not tx[1]:
                async with conn.transaction(isolation=tx[0]):
                    return await op(_PgConn(conn, self), *args, **kwargs)
            transaction = conn.transaction(isolation=tx[0], readonly=True)
            await transaction.start()
            try:
                result = await op(_PgConn(conn, self), *args, **kwargs)
            except Exception:
                await transaction.rollback()
                raise
            slot.ending = asyncio.ensure_future(self._end(slot, conn, transaction))
            return result
        except _LOST as exc:
            if slot.conn is not None:
                log.warning(
                    "PostgreSQL connection lost (%s: %s); reconnecting",
                    type(exc).__name__,
                    str(exc)[:200] or "closed",
                )
            self._drop(slot)
            raise ConnectionLost(f"postgres connection lost: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StorageError(f"postgres: {exc}") from exc
        except BaseException:
            # Cancelled half way: the connection's state is unknown, so never reuse it.
            self._drop(slot)
            raise

    @classmethod
    async def _end(cls, slot: _Slot, conn: Any, transaction: Any) -> None:
        """COMMIT a read on ``conn``, ``slot``'s connection; should that fail, throw the
        connection away (never raises)."""
        try:
            await transaction.commit()
        except Exception as exc:
            if slot.conn is conn:
                log.warning("PostgreSQL COMMIT of a read failed (%s); reconnecting", exc)
                cls._drop(slot)
        finally:
            slot.ending = None

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.conn is not None:
            slot.conn.terminate()
            slot.conn = None

    async def _read(self, op: Op[..., T], args: Any, kwargs: Any, tx: tuple[str, bool] | None) -> T:
        started = time.perf_counter()
        async with self._reader_slots:
            slot = self._readers.popleft()
            try:
                try:
                    return await run_asyncio(self._run, slot, op, args, kwargs, tx)
                except ConnectionLost:
                    # Once more, on a fresh connection.
                    return await run_asyncio(self._run, slot, op, args, kwargs, tx)
            finally:
                self._readers.append(slot)
                _READ_TIME.observe(time.perf_counter() - started)

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(op, args, kwargs, ("repeatable_read", True))

    async def read_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(op, args, kwargs, None)

    async def read_settled(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(op, args, kwargs, None)

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(op, args, kwargs, ("read_committed", False))

    async def write_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._write(op, args, kwargs, None)

    async def _write(
        self, op: Op[..., T], args: Any, kwargs: Any, tx: tuple[str, bool] | None
    ) -> T:
        started = time.perf_counter()
        try:
            async with self._write_lock:
                return await run_asyncio(self._run, self._writer, op, args, kwargs, tx)
        finally:
            _WRITE_TIME.observe(time.perf_counter() - started)

    async def run_script(self, sql: str) -> None:
        async def script(conn: Conn) -> None:
            await conn.execute(sql)

        await self.write(script)

    def change_watch(self, channel: str, counter_sql: str) -> _PgChangeWatch:
        return _PgChangeWatch(self._dsn, channel)

    async def _close(self) -> None:
        for slot in [self._writer, *self._readers]:
            if slot.ending is not None:
                await slot.ending
            if slot.conn is not None:
                await slot.conn.close(timeout=5)
                slot.conn = None


@asynccontextmanager
async def open_postgres(
    dsn: str, *, readonly: bool = False, readers: int = 4
) -> AsyncIterator[PostgresEngine]:
    """Connect to ``dsn`` over the process's trio-asyncio bridge; close everything on exit.

    With ``readonly``, every session is opened with ``default_transaction_read_only``, so
    the server itself refuses any write (used for a homeserver's database, which trio-sync
    only reads). Raises :class:`StorageError` when the server cannot be reached.
    """
    async with open_bridge():
        engine = PostgresEngine(dsn, readers=readers, readonly=readonly)
        try:
            await engine.read_one(_ping)
        except StorageError as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            yield engine
        finally:
            with trio.CancelScope(shield=True):
                await run_asyncio(engine._close)


async def _ping(conn: Conn) -> None:
    await conn.fetchval("SELECT 1")
