"""The one trio-asyncio bridge: asyncio libraries (asyncpg, nats-py) driven from Trio.

Everything asyncio in a trio-sync process runs on one trio-asyncio loop. Whoever needs it
enters :func:`open_bridge`: the first entry opens the loop, nested entries (a second
PostgreSQL database, a JetStream client) reuse the one already current in their context,
and the loop closes when the outermost entry exits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio_asyncio

from .errors import sole_exception

T = TypeVar("T")

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_bridge() -> AsyncIterator[None]:
    """Make asyncio code runnable (through :func:`run_asyncio`) inside this block.

    Opens a trio-asyncio loop unless one is already current; on exit, only the entry that
    opened it closes it (its asyncio tasks are cancelled then). Errors raised inside come
    out unwrapped from the loop's own nursery. An error asyncio reports with nobody to
    raise it to is logged (:func:`_report`), not raised.
    """
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    try:
        async with trio_asyncio.open_loop() as loop:
            loop.set_exception_handler(_report)
            yield
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An error asyncio could give to no caller, such as a future's exception nobody
    retrieved: asyncpg's probe of a new connection leaves one when the server cuts the
    connection while it is being made. One warning line, as plain asyncio would log it;
    trio-asyncio's own handler would end the loop, and with it the service."""
    exc = context.get("exception")
    message = context.get("message") or "unhandled error in the asyncio loop"
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    log.warning("asyncio: %s%s", message, detail)


async def run_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await the asyncio coroutine function ``fn(*args)`` from Trio (one bridge crossing).

    A checkpoint. If the Trio side is cancelled, the asyncio task is cancelled too and the
    call raises ``trio.Cancelled``.
    """
    return await trio_asyncio.aio_as_trio(fn)(*args)  # type: ignore[no-any-return]
