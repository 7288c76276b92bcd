"""PostgreSQL engine: asyncpg, driven from Trio through the trio-asyncio bridge.

A whole storage operation crosses the bridge once: the operation's coroutine runs inside
asyncio against a pooled connection and its transaction, and only the result comes back.
Reads run in ``REPEATABLE READ READ ONLY`` transactions, so every query of an operation
sees one snapshot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio
import trio_asyncio

from ..errors import StorageError, sole_exception
from .engine import Array, Op, P, Row, T


def _params(args: Sequence[object]) -> tuple[object, ...]:
    return tuple(list(a.items) if isinstance(a, Array) else a for a in args)


class _PgConn:
    __slots__ = ("_c",)

    def __init__(self, c: Any) -> None:
        self._c = c

    async def fetch(self, sql: str, *args: object) -> Sequence[Row]:
        return await self._c.fetch(sql, *_params(args))  # type: ignore[no-any-return]

    async def fetchrow(self, sql: str, *args: object) -> Row | None:
        return await self._c.fetchrow(sql, *_params(args))  # type: ignore[no-any-return]

    async def fetchval(self, sql: str, *args: object) -> Any:
        return await self._c.fetchval(sql, *_params(args))

    async def execute(self, sql: str, *args: object) -> None:
        await self._c.execute(sql, *_params(args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._c.executemany(sql, [_params(r) for r in rows])


class PostgresEngine:
    """A pool of asyncpg connections used from Trio."""

    name = "postgres"

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._write_lock = trio.Lock()

    async def _run(self, op: Op[..., T], args: Any, kwargs: Any, isolation: str, ro: bool) -> T:
        try:
            async with self._pool.acquire() as c, c.transaction(isolation=isolation, readonly=ro):
                return await op(_PgConn(c), *args, **kwargs)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"postgres: {exc}") from exc

    async def read(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await trio_asyncio.aio_as_trio(self._run)(  # type: ignore[no-any-return]
            op, args, kwargs, "repeatable_read", True
        )

    async def write(self, op: Op[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._write_lock:
            return await trio_asyncio.aio_as_trio(self._run)(  # type: ignore[no-any-return]
                op, args, kwargs, "read_committed", False
            )

    async def run_script(self, sql: str) -> None:
        async def run() -> None:
            try:
                async with self._pool.acquire() as c, c.transaction():
                    await c.execute(sql)
            except asyncpg.PostgresError as exc:
                raise StorageError(f"postgres: {exc}") from exc

        async with self._write_lock:
            await trio_asyncio.aio_as_trio(run)()


@asynccontextmanager
async def open_postgres(dsn: str, max_size: int = 10) -> AsyncIterator[PostgresEngine]:
    """Open a pool to ``dsn`` inside a trio-asyncio loop; close both on exit.

    Raises :class:`StorageError` when the server cannot be reached.
    """
    try:
        async with trio_asyncio.open_loop():
            try:
                pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(
                    dsn, min_size=1, max_size=max_size, timeout=10
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
            try:
                yield PostgresEngine(pool)
            finally:
                with trio.CancelScope(shield=True):
                    await trio_asyncio.aio_as_trio(pool.close)()
    except BaseExceptionGroup as group:
        # The bridge's loop runs a nursery of its own; pass on what was raised, unwrapped.
        raise sole_exception(group) from None
