"""PostgreSQL engine: asyncpg, driven from Trio through the trio-asyncio bridge.

A whole storage operation crosses the bridge once: the operation's coroutine runs inside
asyncio against a pooled connection and its transaction, and only the result comes back.
Reads run in ``REPEATABLE READ READ ONLY`` transactions, so every query of an operation
sees one snapshot; ``read_one`` runs a single-statement operation without one (a statement
is its own snapshot), saving the BEGIN and COMMIT round trips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio
import trio_asyncio

from ..errors import StorageError, sole_exception
from .engine import Array, Conn, Op, P, Row, T


def _params(args: Sequence[object]) -> tuple[object, ...]:
    return tuple(list(a.items) if isinstance(a, Array) else a for a in args)


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

    async def execute(self, sql: str, *args: object) -> None:
        self._engine.statements += 1
        await self._c.execute(sql, *_params(args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self._engine.statements += 1
        await self._c.executemany(sql, [_params(r) for r in rows])


class _Slot:
    """One connection of the engine's own (no pool: a pool's acquire/reset costs two
    round trips per operation, and nothing here sets session state to reset)."""

    __slots__ = ("conn",)

    def __init__(self) -> None:
        self.conn: Any = None


class PostgresEngine:
    """A writer connection and a few reader connections, used from Trio."""

    name = "postgres"

    def __init__(self, dsn: str, readers: int = 4) -> None:
        self._dsn = dsn
        self._writer = _Slot()
        self._write_lock = trio.Lock()
        self._readers = [_Slot() for _ in range(readers)]
        self._reader_slots = trio.Semaphore(readers)
        #: Counted in the asyncio loop, which runs in Trio's thread.
        self.statements = 0

    async def _run(
        self, slot: _Slot, op: Op[..., T], args: Any, kwargs: Any, tx: tuple[str, bool] | None
    ) -> T:
        """Runs inside asyncio: (re)connect if needed, then the operation."""
        try:
            if slot.conn is None or slot.conn.is_closed():
                slot.conn = await asyncpg.connect(self._dsn, timeout=10)
            conn = slot.conn
            if tx is None:
                return await op(_PgConn(conn, self), *args, **kwargs)
            async with conn.transaction(isolation=tx[0], readonly=tx[1]):
                return await op(_PgConn(conn, self), *args, **kwargs)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"postgres: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
            self._drop(slot)
            raise StorageError(f"postgres connection lost: {exc}") from exc
        except BaseException:
            # Cancelled half way: the connection's state is unknown, so never reuse it.
            self._drop(slot)
            raise

    @staticmethod
    def _drop(slot: _Slot) -> None:
        if slot.conn is not None:
            slot.conn.terminate()
            slot.conn = None

    async def _read(self, op: Op[..., T], args: Any, kwargs: Any, tx: tuple[str, bool] | None) -> T:
        async with self._reader_slots:
            slot = self._readers.pop()
            try:
                return await trio_asyncio.aio_as_trio(self._run)(  # type: ignore[no-any-return]
                    slot, op, args, kwargs, tx
                )
            finally:
                self._readers.append(slot)

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(op, args, kwargs, ("repeatable_read", True))

    async def read_one(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._read(op, args, kwargs, None)

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._write_lock:
            return await trio_asyncio.aio_as_trio(self._run)(  # type: ignore[no-any-return]
                self._writer, op, args, kwargs, ("read_committed", False)
            )

    async def run_script(self, sql: str) -> None:
        async def script(conn: Conn) -> None:
            await conn.execute(sql)

        await self.write(script)

    async def _close(self) -> None:
        for slot in [self._writer, *self._readers]:
            if slot.conn is not None:
                await slot.conn.close(timeout=5)
                slot.conn = None


@asynccontextmanager
async def open_postgres(dsn: str) -> AsyncIterator[PostgresEngine]:
    """Connect to ``dsn`` inside a trio-asyncio loop; close everything on exit.

    Raises :class:`StorageError` when the server cannot be reached.
    """
    try:
        async with trio_asyncio.open_loop():
            engine = PostgresEngine(dsn)
            try:
                await engine.write(_ping)
            except StorageError as exc:
                raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
            try:
                yield engine
            finally:
                with trio.CancelScope(shield=True):
                    await trio_asyncio.aio_as_trio(engine._close)()
    except BaseExceptionGroup as group:
        # The bridge's loop runs a nursery of its own; pass on what was raised, unwrapped.
        raise sole_exception(group) from None


async def _ping(conn: Conn) -> None:
    await conn.fetchval("SELECT 1")
