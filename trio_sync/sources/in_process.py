"""The in-process source: log messages handed over by calls in the same program.

The embedding program (``Service.ingest``) and the client write endpoints
(``Service.client_write``) use it. There is no position to resume from: the caller
holds the messages and gets the answer once they are committed. Delivering a room event
again keeps its first position, so a caller that retries doubles nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from ..ingest.apply import Applied
from ..ingest.runner import Ingestor
from ..sync.presence_tracker import Submit

#: The source name of messages written by client endpoints.
CLIENT = "client"


def encode(messages: Iterable[Mapping[str, Any] | bytes | str]) -> list[bytes]:
    """Messages as dicts, JSON text or JSON bytes, as the raw bytes ingest parses."""
    return [
        m if isinstance(m, bytes) else m.encode() if isinstance(m, str) else orjson.dumps(m)
        for m in messages
    ]


async def submit_in_batches(
    ingestor: Ingestor, source: str, raws: Sequence[bytes], batch_size: int
) -> Applied:
    """Apply ``raws`` in order, ``batch_size`` per transaction; return what changed.

    Each message's offset (in ``ingest_rejects`` and ``Applied.rejects``) is its index in
    ``raws``. Each batch is committed (and its clients woken) before the next is queued. A
    cancellation stops between batches: those already taken are applied whole.
    """
    total = Applied()
    for start in range(0, max(len(raws), 1), batch_size):
        chunk = raws[start : start + batch_size]
        offsets: list[int | None] = list(range(start, start + len(chunk)))
        total.merge(await ingestor.submit(source, chunk, offsets))
    return total


def client_writer(ingestor: Ingestor) -> Submit:
    """Submits messages written by clients, as one batch, through the single ingest task."""

    async def submit(messages: Sequence[Mapping[str, Any]]) -> Applied:
        return await ingestor.submit(CLIENT, [orjson.dumps(m) for m in messages])

    return submit
