"""The quarantine: log messages that could not be applied (``ingest_rejects``)."""

from __future__ import annotations

from dataclasses import dataclass

from .engine import Conn


@dataclass(frozen=True, slots=True)
class Reject:
    """One quarantined message: where it came from, why, and its first bytes."""

    id: int
    source: str
    offset: int | None
    reason: str
    head: bytes
    size: int
    rejected_at: int


async def recent_rejects(conn: Conn, limit: int, head: int = 120) -> list[Reject]:
    """The ``limit`` most recently rejected messages, oldest first, with at most ``head``
    bytes of each."""
    rows = await conn.fetch(
        "SELECT id, source, position, reason, raw, rejected_at FROM ingest_rejects "
        "ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [
        Reject(
            int(r[0]),
            str(r[1]),
            None if r[2] is None else int(r[2]),
            str(r[3]),
            bytes(r[4][:head]),
            len(r[4]),
            int(r[5]),
        )
        for r in reversed(rows)
    ]


async def count_rejects(conn: Conn) -> int:
    """How many messages are quarantined."""
    return int(await conn.fetchval("SELECT COUNT(*) FROM ingest_rejects"))
