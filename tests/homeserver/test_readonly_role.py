"""The README's read-only database role, created as written, is enough for trio-sync's
lookups and for nothing else."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from trio_sync.errors import StorageError
from trio_sync.homeserver import device_for_access_token, open_homeserver_database
from trio_sync.storage import Conn
from trio_sync.storage.postgres import open_postgres

from ..dendrite import DendriteDatabase

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_grants(role: str, database: str) -> list[str]:
    text = README.read_text()
    section = text[text.index("## Deploying beside Dendrite") :]
    sql = re.search(r"```sql\n(.*?)```", section, re.S)
    assert sql, "no SQL block in 'Deploying beside Dendrite'"
    statements = [s.strip() for s in sql.group(1).split(";") if s.strip()]
    return [
        s.replace("trio_sync_reader", role).replace("DATABASE dendrite", f'DATABASE "{database}"')
        for s in statements
    ]


async def _admin(url: str, statements: list[str]) -> None:
    async def run(conn: Conn) -> None:
        for statement in statements:
            await conn.execute(statement)

    async with open_postgres(url, readers=1) as engine:
        await engine.write(run)


async def _select_accounts(conn: Conn) -> object:
    return await conn.fetch("SELECT * FROM userapi_accounts")


async def test_readme_role_reads_what_trio_sync_needs(dendrite_db: DendriteDatabase) -> None:
    role = f"trio_sync_reader_{uuid.uuid4().hex[:8]}"
    database = dendrite_db.url.rsplit("/", 1)[1]
    await dendrite_db.add_device("@alice:example.org", "PHONE", "syt_alice")
    await _admin(dendrite_db.url, readme_grants(role, database))
    try:
        base = dendrite_db.url.split("://", 1)[1].split("@", 1)[1]
        url = f"postgresql://{role}:change-me@{base}"
        async with open_homeserver_database(url) as hs:
            found = await hs.engine.read_one(device_for_access_token, "syt_alice")
            assert found is not None and found.user_id == "@alice:example.org"
            with pytest.raises(StorageError, match="permission denied"):
                await hs.engine.read_one(_select_accounts)
    finally:
        await _admin(dendrite_db.url, [f"DROP OWNED BY {role}", f"DROP ROLE {role}"])


def test_grants_name_only_existing_tables() -> None:
    from ..dendrite import ROOMSERVER_SCHEMA, USERAPI_SCHEMA

    grants = " ".join(readme_grants("r", "d"))
    granted = re.search(r"GRANT SELECT ON (.*?) TO", grants, re.S)
    assert granted
    tables = {t.strip() for t in granted.group(1).split(",")}
    for table in tables:
        assert f"TABLE IF NOT EXISTS {table} (" in USERAPI_SCHEMA + ROOMSERVER_SCHEMA, table
