"""``GET /health``: may a load balancer send this process traffic?

200 ``{"status": "ok"}`` once storage is open, positions are loaded and the ingest task is
running, and while the database answers; otherwise 503 ``{"status": "unavailable",
"reason": ...}`` (starting, shutting down, ingest stopped, database unreachable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..errors import StorageError
from ..storage import Conn

if TYPE_CHECKING:
    from ..service import Service

#: Seconds the database may take to answer the health query.
DB_TIMEOUT = 2.0


@dataclass
class Readiness:
    """How far a service has started; ``service`` is set once it is ready."""

    phase: str = "starting"
    service: Service | None = None


async def _ping(conn: Conn) -> None:
    await conn.fetchval("SELECT 1")


async def check_health(readiness: Readiness) -> tuple[int, dict[str, Any]]:
    """The status and body of ``GET /health``. A checkpoint (one database query)."""
    service = readiness.service
    if service is None:
        return 503, {"status": "unavailable", "reason": readiness.phase}
    if service.notifier.closing:
        return 503, {"status": "unavailable", "reason": "shutting down"}
    if not service.ingestor.running:
        return 503, {"status": "unavailable", "reason": "the ingest task is not running"}
    try:
        with trio.fail_after(DB_TIMEOUT):
            await service.engine.read_one(_ping)
    except StorageError as exc:
        return 503, {"status": "unavailable", "reason": f"database unreachable: {exc}"}
    except trio.TooSlowError:
        return 503, {"status": "unavailable", "reason": "database did not answer in time"}
    return 200, {"status": "ok", "position": str(service.notifier.current)}
