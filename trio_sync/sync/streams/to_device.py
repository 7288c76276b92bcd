"""The to-device stream: top-level ``to_device`` for the syncing device.

A message stays in the device's inbox, and is sent again and again, until a ``since``
at or after its position acknowledges it (:class:`ToDeviceAcks` then deletes it). At most
:data:`MAX_PER_RESPONSE` go in one response; when more wait, the response's ``next_batch``
stops at the last one sent, so the next sync (whose ``since`` is behind the device's
newest message) returns at once with the rest.
"""

from __future__ import annotations

import orjson

from ...storage import Conn, Engine
from ...storage.accounts import Device
from ...tokens import StreamToken
from ..response import SyncContext, SyncResponse

MAX_PER_RESPONSE = 100


class ToDeviceStream:
    """Messages waiting in the syncing device's inbox at ``since < p <= now``."""

    async def pending(
        self,
        conn: Conn,
        ctx: SyncContext,
        resp: SyncResponse,
        after: int,
        limit: int = MAX_PER_RESPONSE,
    ) -> None:
        """Up to ``limit`` messages at ``after < p <= now`` into ``resp.to_device``; when
        more wait, ``resp.next_batch`` stops at the last one given."""
        rows = await conn.fetch(
            "SELECT pos, sender, type, content FROM device_inbox WHERE user_id = $1 "
            "AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5",
            ctx.user_id,
            ctx.device_id,
            after,
            ctx.now.to_device,
            limit + 1,
        )
        if len(rows) > limit:
            rows = rows[:limit]
            resp.next_batch = resp.next_batch.with_stream("to_device", int(rows[-1][0]))
        for row in rows:
            sender, event_type, content = _quote(row[1]), _quote(row[2]), row[3]
            resp.to_device.append(f'{{"sender":{sender},"type":{event_type},"content":{content}}}')

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self.pending(conn, ctx, resp, 0)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        if ctx.now.to_device > ctx.since.to_device:
            await self.pending(conn, ctx, resp, ctx.since.to_device)


def _quote(text: str) -> str:
    return orjson.dumps(text).decode()


async def _delete_acknowledged(conn: Conn, user_id: str, device_id: str, upto: int) -> None:
    await conn.execute(
        "DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND pos <= $3",
        user_id,
        device_id,
        upto,
    )


class ToDeviceAcks:
    """Deletes delivered messages once a later ``since`` acknowledges them.

    Remembers, per device, the newest position it was sent, so that a sync whose
    ``since`` acknowledges nothing new costs no write. After a restart nothing is
    remembered; messages acknowledged then are deleted with the device's next delivery.
    """

    def __init__(self) -> None:
        self._sent: dict[tuple[str, str], int] = {}

    async def acknowledge(self, engine: Engine, device: Device, since: StreamToken | None) -> None:
        """Delete what ``since`` acknowledges. A checkpoint when it writes; if cancelled,
        the delete has happened whole or not at all (and is retried next time)."""
        key = (device.user_id, device.device_id)
        sent = self._sent.get(key)
        if since is None or sent is None or since.to_device <= 0:
            return
        await engine.write(_delete_acknowledged, key[0], key[1], since.to_device)
        if since.to_device >= sent:
            self._sent.pop(key, None)

    def sent(self, device: Device, resp: SyncResponse) -> None:
        """Record that ``resp`` carries messages up to its ``next_batch``."""
        if resp.to_device:
            self.sent_upto(device, resp.next_batch.to_device)

    def sent_upto(self, device: Device, position: int) -> None:
        """Record that the device was sent messages up to ``position``."""
        key = (device.user_id, device.device_id)
        self._sent[key] = max(self._sent.get(key, 0), position)
