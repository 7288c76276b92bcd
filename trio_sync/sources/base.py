"""The one interface every pulled log source offers, and the loop that drives it.

A source is an async iterator of :class:`Batch` es: consecutive messages, each with its
position in the source, and the position the source has reached after the batch. The
ingest task commits that position in the same transaction as the batch's data (table
``ingest_offsets``, under :attr:`Source.name`), and only then is the batch acknowledged
to the source with :meth:`Source.ack`. A restart asks the source to resume after the
committed position, so a crash at any moment loses nothing and applies nothing twice:
messages the source delivers again at or below the committed position are skipped by
:func:`run_source` before they reach the ingest task.

A position is counted in an *epoch* (:class:`Position`): what the source's positions
refer to, when that can be replaced under the same name (a file put in place of a
followed file, a JetStream stream created anew). The epoch is committed with the
position, so a source resuming finds out whether its committed offset still means
anything, and starts again from the beginning when it does not.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

import trio

from ..ingest.apply import Applied, Item
from ..ingest.runner import Ingestor, Position, stored_position

__all__ = ["Batch", "Position", "Source", "run_source"]


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages ``items`` (in source order) and the source's position ``end`` after them.

    Every item's :attr:`~trio_sync.ingest.apply.Item.reached` is the position once it
    is applied (``<= end``); ``token`` is whatever the source needs to acknowledge the
    batch later (opaque to everyone else); ``epoch`` is what ``end`` counts in (see
    :class:`Position`). ``restart`` set means the source's positions started again (a
    stream created anew, a file truncated or replaced): everything after ``restart`` is
    new, whatever was committed before, and the batch is committed even when empty.
    """

    items: Sequence[Item]
    end: int
    token: object = None
    restart: int | None = None
    epoch: str | None = None


class Source(Protocol):
    """A log source with a resumable position."""

    #: The key its position is committed under (``file:/path``, ``jetstream:<stream>``).
    name: str

    def batches(self, after: Position) -> AsyncGenerator[Batch, None]:
        """Batches of the messages after the committed position ``after``, in order,
        forever (or to the end of a finite source). A source whose epoch is no longer
        ``after.epoch`` starts from its beginning, its first batch saying ``restart=0``.
        Cancellation between batches loses nothing."""
        ...

    async def ack(self, batch: Batch) -> None:
        """Called once ``batch`` is committed. Must not raise for a lost connection:
        an unacknowledged batch is delivered again and skipped as already applied."""
        ...


async def run_source(
    source: Source,
    ingestor: Ingestor,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> Applied:
    """Feed ``source`` into ``ingestor`` from its committed position until it ends;
    return what it changed (a source that never ends returns only by an exception).

    For each batch: the items at or below the committed position are dropped (a source
    delivering again what was already applied), the rest are applied together with the
    batch's ``end`` and epoch in one transaction, then the batch is acknowledged.
    Cancellation while a batch is queued applies nothing of it; once the ingest task
    holds it, it is committed whole and acknowledged at the next start (as a
    redelivery). The batch iterator is closed on the way out, cancelled or not.
    """
    committed = await ingestor.engine.write(stored_position, source.name)
    task_status.started()
    at, epoch = committed.offset, committed.epoch
    total = Applied()
    async with aclosing(source.batches(committed)) as batches:
        async for batch in batches:
            if batch.restart is not None:
                at = batch.restart
            fresh = [i for i in batch.items if i.reached is None or i.reached > at]
            end = max(batch.end, at)
            if end > at or batch.restart is not None or batch.epoch != epoch:
                total.merge(await ingestor.submit_items(source.name, fresh, end, batch.epoch))
                at, epoch = end, batch.epoch
            await source.ack(batch)
    return total
