"""``/sync`` by stage: parse → wait → gather → shape.

The wait is the only place a request parks: a ``trio.move_on_after`` around
:meth:`Notifier.wait_for_update`, so ``timeout`` is a cancel scope's deadline and a client
that disconnects cancels the wait at once. Gathering is one storage read (one hop off the
Trio loop, one snapshot) bounded by the token taken after the wait.
"""

from __future__ import annotations

import time

import trio

from ..errors import MatrixError
from ..filters import Filter, parse_filter_json
from ..notifier import Notifier
from ..storage import Conn, Engine
from ..storage.accounts import Device, load_filter
from ..tokens import StreamToken
from .request import SyncRequest
from .response import SyncContext, SyncResponse
from .streams import PROVIDERS
from .timeline import Viewer

#: How many devices' lazy-loading memory is kept (least recently syncing dropped first).
LAZY_CACHE_DEVICES = 10_000


async def _gather(conn: Conn, ctx: SyncContext) -> SyncResponse:
    resp = SyncResponse(next_batch=ctx.now)
    for provider in PROVIDERS:
        if ctx.since is None:
            await provider.complete(conn, ctx, resp)
        else:
            await provider.incremental(conn, ctx, resp)
    return resp


class SyncHandler:
    """Answers ``/sync`` for authenticated devices."""

    def __init__(self, engine: Engine, notifier: Notifier) -> None:
        self._engine = engine
        self._notifier = notifier
        self._lazy_cache: dict[tuple[str, str], dict[str, dict[str, tuple[str, int]]]] = {}

    async def resolve_filter(self, user_id: str, text: str | None) -> Filter:
        """The filter a request names: inline JSON (starts with ``{``) or a stored ID."""
        if text is None:
            return Filter()
        if text.lstrip().startswith("{"):
            return parse_filter_json(text)
        return await self.stored_filter(user_id, text)

    async def stored_filter(self, user_id: str, filter_id: str) -> Filter:
        """A filter stored with ``POST /user/{userId}/filter``; 404 if there is none."""
        if not (filter_id.isascii() and filter_id.isdigit()) or len(filter_id) > 18:
            raise MatrixError(400, "M_INVALID_PARAM", "filter must be a filter ID or JSON")
        stored = await self._engine.read_one(load_filter, user_id, int(filter_id))
        if stored is None:
            raise MatrixError(404, "M_NOT_FOUND", f"No filter {filter_id} for {user_id}")
        return parse_filter_json(stored)

    async def sync(self, device: Device, req: SyncRequest) -> SyncResponse:
        """Build the response; for an incremental sync, wait up to ``req.timeout_ms`` first.

        A complete sync (no ``since``) and ``full_state=true`` never wait. An incremental
        sync returns as soon as something for this user is committed; on timeout it
        returns an empty response whose ``next_batch`` is not before ``since``.
        Cancellation (client disconnect) ends the wait at once and leaves nothing behind.
        """
        filt = await self.resolve_filter(device.user_id, req.filter)
        since = req.since
        if since is None or req.full_state:
            return await self._build(device, req, since, self._notifier.current, filt)
        deadline = trio.current_time() + req.timeout_ms / 1000
        wait_from = since
        while True:
            with trio.move_on_at(deadline):
                await self._notifier.wait_for_update(device.user_id, wait_from)
            now = self._notifier.current.union(since)
            resp = await self._build(device, req, since, now, filt)
            if not resp.is_empty() or trio.current_time() >= deadline or self._notifier.closing:
                return resp
            # Woken for something that turned out to hold nothing for this user: the
            # range since..now is known empty, so keep waiting from now.
            wait_from = now

    async def _build(
        self,
        device: Device,
        req: SyncRequest,
        since: StreamToken | None,
        now: StreamToken,
        filt: Filter,
    ) -> SyncResponse:
        viewer = Viewer(
            device.user_id,
            session_id=device.session_id,
            fmt=filt.event_format,
            fields=filt.event_fields,
            now_ms=int(time.time() * 1000),
        )
        lazy = filt.room.state.lazy_load_members
        ctx = SyncContext(
            device.user_id,
            device.device_id,
            since,
            now,
            filt,
            req.full_state,
            viewer=viewer,
            state_field=req.state_field,
            sent_members=self._sent_members(device) if lazy else None,
        )
        return await self._engine.read(_gather, ctx)

    def _sent_members(self, device: Device) -> dict[str, dict[str, tuple[str, int]]]:
        """The lazy-loaded member events this device has been sent, with the PDU position
        of the response that carried each (a bounded cache: a device it forgot about is
        sent them again, which is always correct)."""
        key = (device.user_id, device.device_id)
        sent = self._lazy_cache.pop(key, None)
        if sent is None:
            sent = {}
        self._lazy_cache[key] = sent
        while len(self._lazy_cache) > LAZY_CACHE_DEVICES:
            del self._lazy_cache[next(iter(self._lazy_cache))]
        return sent
