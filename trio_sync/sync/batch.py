"""``/sync`` requests whose storage reads fall due together share one read.

One event in a busy room wakes every request parked on its members in one step (the
notifier cancels their scopes): they resume in the same round of Trio's scheduler and
reach their storage read together. :meth:`SharedReads.read` makes the first of them wait
for the scheduler rounds in which others join (a round with no newcomer ends the wait),
then gathers every joined request in one storage read: one thread hop on SQLite, one
bridge crossing on PostgreSQL, and one :class:`~.shared.WakeShare`, so a
room's new events, their visibility and their serialised text are read and computed once
for all of them. Requests with the same key (same device, ``since``, ``now``, filter and
options) are answered with the same response, computed once.

A lone request pays one scheduler round for this and nothing else.

Cancellation: the read of a batch runs shielded in its first request's task (it serves
the others too), so cancelling that request (its client went away) takes effect when
the read is done, which is when it returns its answer unsent. Any other request of the
batch may be cancelled at any time and simply drops its answer. When the batch read
fails, every request of the batch reads again alone, so one request's error never
becomes another's.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable
from dataclasses import replace
from typing import Any

import trio

from ..storage import Conn, Engine
from .response import SyncContext, SyncResponse
from .shared import WakeShare

#: Gathers one request's response inside a storage read.
Gather = Callable[[Conn, SyncContext], Coroutine[Any, Any, SyncResponse]]


class _Entry:
    __slots__ = ("ctx", "done", "error", "key", "result")

    def __init__(self, ctx: SyncContext, key: Hashable) -> None:
        self.ctx = ctx
        self.key = key
        self.done = trio.Event()
        #: None once done: the batch read failed; read alone (unless ``error`` is set).
        self.result: SyncResponse | None = None
        #: The failure of a read that served this request alone (nothing to retry).
        self.error: Exception | None = None


async def _gather_all(
    conn: Conn, gather: Gather, ctxs: list[SyncContext], now_ms: int
) -> list[SyncResponse]:
    share = WakeShare()
    out = []
    for ctx in ctxs:
        ctx.shared = share
        if ctx.viewer.now_ms:
            # One age for every event served by this read, so viewers share the text.
            ctx.viewer = replace(ctx.viewer, now_ms=now_ms)
        out.append(await gather(conn, ctx))
    return out


class SharedReads:
    """Runs the storage reads of ``/sync`` requests that fall due together as one."""

    def __init__(self, engine: Engine, gather: Gather) -> None:
        self._engine = engine
        self._gather = gather
        #: The batch whose first request is still waiting for others to join.
        self._forming: list[_Entry] | None = None
        #: How many storage reads batches have taken, and how many requests they served
        #: (for tests and the bench).
        self.reads = 0
        self.served = 0

    async def read(self, ctx: SyncContext, key: Hashable) -> SyncResponse:
        """``gather(conn, ctx)`` in a storage read shared with every request that asks in
        the same scheduler rounds. Always yields to the scheduler; see the module
        docstring for cancellation. Raises what the gather raises."""
        entry = _Entry(ctx, key)
        batch = self._forming
        if batch is not None:
            batch.append(entry)
            await entry.done.wait()
        else:
            batch = self._forming = [entry]
            try:
                while True:
                    joined = len(batch)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    if len(batch) == joined:
                        break
            finally:
                self._forming = None
            with trio.CancelScope(shield=True):
                await self._run(batch)
        if entry.error is not None:
            raise entry.error
        if entry.result is None:
            ctx.shared = WakeShare()  # nothing of the failed read's memos
            return await self._engine.read_settled(self._gather, ctx)
        return entry.result

    async def _run(self, batch: list[_Entry]) -> None:
        unique: dict[Hashable, _Entry] = {}
        for entry in batch:
            unique.setdefault(entry.key, entry)
        firsts = list(unique.values())
        now_ms = max(e.ctx.viewer.now_ms for e in firsts)
        try:
            results = await self._engine.read_settled(
                _gather_all, self._gather, [e.ctx for e in firsts], now_ms
            )
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc  # its own failure: reading again would repeat it
            results = None
        if results is not None:
            self.reads += 1
            self.served += len(batch)
            by_key = {e.key: r for e, r in zip(firsts, results, strict=True)}
            for entry in batch:
                entry.result = by_key[entry.key]
        for entry in batch:
            entry.done.set()
