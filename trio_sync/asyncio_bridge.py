"""The one trio-asyncio loop the process's asyncio libraries run in.

asyncpg (the PostgreSQL engines) and nats-py (the JetStream source) are asyncio
libraries. They share a single asyncio loop run inside the Trio program:
:func:`open_bridge` opens it, or joins the one already open in the calling task's
context, so nesting users (the service, then the PostgreSQL engine inside it) never
start a second loop. Calls cross with ``trio_asyncio.aio_as_trio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio_asyncio

from .errors import sole_exception


@asynccontextmanager
async def open_bridge() -> AsyncIterator[None]:
    """Run the body with an asyncio loop available (the current one, if any).

    The loop opened here is closed when the body exits; its own nursery's errors are
    passed on unwrapped when there is exactly one.
    """
    if trio_asyncio.current_loop.get(None) is not None:
        yield
        return
    try:
        async with trio_asyncio.open_loop():
            yield
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
