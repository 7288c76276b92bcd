"""The one interface every pulled log source offers, and the loop that drives it.

A source is an async iterator of :class:`Batch` es: consecutive messages, each with its
position in the source, and the position the source has reached after the batch. The
ingest task commits that position in the same transaction as the batch's data (table
``ingest_offsets``, under :attr:`Source.name`), and only then is the batch acknowledged
to the source with :meth:`Source.ack`. A restart asks the source to resume after the
committed position, so a crash at any moment loses nothing and applies nothing twice:
messages the source delivers again at or below the committed position are skipped by
:func:`run_source` before they reach the ingest task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from ..ingest.apply import Item
from ..ingest.runner import Ingestor, parse_items, source_offset


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages ``items`` (in source order) and the source's position ``end`` after them.

    Every item's ``offset`` is its own position (``<= end``); ``token`` is whatever the
    source needs to acknowledge the batch later (opaque to everyone else). ``restart``
    set means the source's positions started again (a stream that was deleted and
    created anew): everything after ``restart`` is new, whatever was committed before.
    """

    items: Sequence[Item]
    end: int
    token: object = None
    restart: int | None = None

    @classmethod
    def of_raws(
        cls, raws: Sequence[bytes], offsets: Sequence[int], end: int, token: object = None
    ) -> Batch:
        """A batch of raw log lines in trio-sync's own dialect, parsed."""
        return cls(parse_items(raws, offsets), end, token)


class Source(Protocol):
    """A log source with a resumable position."""

    #: The key its position is committed under (``file:/path``, ``jetstream:<stream>``).
    name: str

    def batches(self, after: int) -> AsyncIterator[Batch]:
        """Batches of the messages after position ``after``, in order, forever (or to
        the end of a finite source). Cancellation between batches loses nothing."""
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
) -> None:
    """Feed ``source`` into ``ingestor`` from its committed position until it ends.

    For each batch: the items at or below the committed position are dropped (a source
    delivering again what was already applied), the rest are applied together with the
    batch's ``end`` in one transaction, then the batch is acknowledged. Cancellation
    while a batch is queued applies nothing of it; once the ingest task holds it, it is
    committed whole and acknowledged at the next start (as a redelivery).
    """
    committed = await ingestor.engine.read(source_offset, source.name)
    task_status.started()
    async for batch in source.batches(committed):
        if batch.restart is not None:
            committed = batch.restart
        fresh = [i for i in batch.items if i.offset is None or i.offset > committed]
        if batch.end > committed:
            await ingestor.submit_items(source.name, fresh, batch.end)
            committed = batch.end
        await source.ack(batch)
