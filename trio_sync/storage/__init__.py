"""Storage: one SQL set, two engines, operations written once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

from ..errors import StorageError
from .engine import FOREVER, Array, Conn, Engine, Row
from .migrations import migrate

__all__ = ["FOREVER", "Array", "Conn", "Engine", "Row", "StorageError", "migrate", "open_engine"]


@asynccontextmanager
async def open_engine(url: str, *, apply_migrations: bool = True) -> AsyncIterator[Engine]:
    """Open the database named by ``url`` and (by default) apply pending migrations.

    ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``postgresql://user@host:port/db``. Closed when the context exits, also on cancellation.
    """
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from .sqlite import open_sqlite

        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise StorageError(f"bad SQLite URL {url!r}: use sqlite:///PATH")
        async with open_sqlite(path) as engine:
            if apply_migrations:
                await migrate(engine)
            yield engine
    elif scheme in ("postgres", "postgresql"):
        from .postgres import open_postgres

        async with open_postgres(url) as pg:
            if apply_migrations:
                await migrate(pg)
            yield pg
    else:
        raise StorageError(f"unsupported database URL {url!r}")
