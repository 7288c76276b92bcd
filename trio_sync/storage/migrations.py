"""Versioned migrations: ``NNN_name.sql`` files applied in order, recorded in a table.

A migration that needs each database's own dialect (JSON functions differ) comes as a pair
``NNN_name.sqlite.sql`` / ``NNN_name.postgres.sql`` sharing one version; each engine runs
its own.
"""

from __future__ import annotations

import logging
import re
import time
from importlib import resources
from pathlib import Path

from ..errors import StorageError
from .engine import Conn, Engine

log = logging.getLogger(__name__)

_NAME = re.compile(r"(\d{3})_[a-z0-9_]+(?:\.(sqlite|postgres))?\.sql")


def sql_dir() -> Path:
    """Where the migration files are: inside the installed package, else the checkout."""
    packaged = resources.files("trio_sync").joinpath("sql")
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():
        return checkout
    raise StorageError("migration files not found (trio_sync/sql or ./sql)")


def migration_files(dialect: str | None = None) -> list[tuple[int, Path]]:
    """The migrations of ``dialect`` (an engine's name), ordered by version; without one,
    one file per version."""
    found: dict[int, Path] = {}
    for path in sorted(sql_dir().iterdir()):
        match = _NAME.fullmatch(path.name)
        if match and (dialect is None or match[2] in (None, dialect)):
            found.setdefault(int(match[1]), path)
    return sorted(found.items())


async def _applied(conn: Conn) -> set[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    return {row[0] for row in await conn.fetch("SELECT version FROM schema_version")}


async def migrate(engine: Engine) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied.

    Each file runs in its own transaction together with its ``schema_version`` row, so a
    failure leaves the database at the previous version.
    """
    done = await engine.write(_applied)
    applied = []
    for version, path in migration_files(engine.name):
        if version in done:
            continue
        script = path.read_text()
        record = (
            f"INSERT INTO schema_version (version, applied_at) "
            f"VALUES ({version}, {int(time.time() * 1000)});"
        )
        await engine.run_script(f"{script}\n{record}")
        log.info("applied migration %s", path.name)
        applied.append(version)
    return applied
