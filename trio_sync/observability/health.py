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
from ..storage import Conn, Engine

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


class DatabaseProbe:
    """Runs the health query from a task of the service's own nursery: that is where
    the database driver's context is (PostgreSQL runs inside the service's asyncio
    loop), whichever listener's task asks."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._send, self._receive = trio.open_memory_channel[tuple[trio.Event, list[Exception]]](
            100
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Answer pings until cancelled."""
        task_status.started()
        async for done, failure in self._receive:
            try:
                await self._engine.read_one(_ping)
            except Exception as exc:
                failure.append(exc)
            finally:
                done.set()

    async def ping(self) -> None:
        """One query; raises what it raised. A checkpoint; cancelling it abandons the
        answer (the query still runs)."""
        done, failure = trio.Event(), list[Exception]()
        self._send.send_nowait((done, failure))
        await done.wait()
        if failure:
            raise failure[0]


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
            await service.probe.ping()
    except StorageError as exc:
        return 503, {"status": "unavailable", "reason": f"database unreachable: {exc}"}
    except trio.TooSlowError:
        return 503, {"status": "unavailable", "reason": "database did not answer in time"}
    return 200, {"status": "ok", "position": str(service.notifier.current)}
