"""``/sync`` by stage: parse → wait → gather → shape.

The wait is the only place a request parks: one cancel scope, registered with
:meth:`Notifier.park` (which cancels it when something arrives) and whose deadline is
``timeout``. A request whose answer is ready (no ``since``, ``full_state``, ``timeout=0``,
or something already after ``since``) never enters that scope: it runs straight through.
The stages before and after the wait are two calls, :meth:`SyncHandler.start` and
:meth:`SyncHandler.resume`, with a small :class:`Waiting` between them, so the caller
parks in its own frame: the HTTP endpoint waits there for its client's messages (a
disconnect ends the wait), and no handler coroutine is alive while a poll is parked.
:meth:`SyncHandler.sync` is the three steps in one call, parked on a :data:`Park` hook.
Gathering is one storage read (one hop off the Trio loop) bounded by the token taken
after the wait: :meth:`~trio_sync.storage.Engine.read_settled`, since what it reads had
settled when that token's positions committed, so it needs no snapshot transaction. It is
shared with every request whose read falls due at the same time (see
:mod:`trio_sync.sync.batch`): the polls one commit woke are answered from one read.

Before the wait, the device's ``set_presence`` is recorded (a write only when it changed)
and to-device messages the ``since`` acknowledges are deleted (a write only when some were
sent before).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

import trio

from ..errors import MatrixError
from ..filters import Filter, parse_filter_json
from ..notifier import Notifier
from ..observability.metrics import SYNC_COMPLETE, SYNC_EMPTY, SYNC_INCREMENTAL
from ..storage import Conn, Engine
from ..storage.account_data import ignored_users
from ..storage.accounts import Device, load_filter
from ..storage.rounds import together
from ..tokens import StreamToken
from .batch import SharedReads
from .memory_only import NO_STORAGE, KeyCountCache, StorageNeeded, only_typing_moved
from .presence_tracker import PresenceTracker
from .request import SyncRequest
from .response import KeyCounts, SyncContext, SyncResponse
from .streams import PROVIDERS
from .streams.pdu import JoinedRoomsDiffer
from .streams.to_device import ToDeviceAcks
from .timeline import Viewer

#: How many devices' lazy-loading memory is kept (least recently syncing dropped first).
LAZY_CACHE_DEVICES = 10_000

#: What a parked request awaits in :meth:`SyncHandler.sync` until the notifier (or the
#: timeout) cancels it; the default sleeps.
Park = Callable[[], Awaitable[object]]


#: The filter of a request that names none (filters are frozen: one serves them all).
NO_FILTER = Filter()


class Waiting:
    """An incremental ``/sync`` with nothing to answer yet: what its wait and the reads
    after it need (see :meth:`SyncHandler.start`). Slotted: every parked poll holds one,
    in place of the frames of a handler coroutine."""

    __slots__ = ("deadline", "device", "filt", "req", "since", "wait_from")

    def __init__(
        self, device: Device, req: SyncRequest, filt: Filter, deadline: float, since: StreamToken
    ) -> None:
        self.device = device
        self.req = req
        self.filt = filt
        #: When the wait ends with an empty answer (trio clock).
        self.deadline = deadline
        #: ``req.since``.
        self.since = since
        #: The position the wait is for news after: ``since``, then the position of each
        #: empty answer after it.
        self.wait_from = since


def _new_response(ctx: SyncContext) -> SyncResponse:
    return SyncResponse(
        next_batch=ctx.now,
        state_field=ctx.state_field,
        client_format=ctx.viewer.fmt != "federation",
    )


async def _gather(conn: Conn, ctx: SyncContext) -> SyncResponse:
    resp = _new_response(ctx)
    since = ctx.since
    if since is None or ctx.full_state or since.pdu < ctx.now.pdu or since.invite < ctx.now.invite:
        # Room events and invites from ignored users are never served.
        if ctx.ignored_users is None:
            ctx.ignored_users = await ignored_users(conn, ctx.user_id)
        ctx.viewer = replace(ctx.viewer, ignored=ctx.ignored_users)
    if ctx.since is None:
        # No stream of a complete sync depends on another's output: every stream's
        # queries go to the server together, round by round. The room sections the room
        # events give take precedence over an invite to the same room.
        complete = [p.complete for p in PROVIDERS]
        try:
            await together(conn, [partial(c, ctx=ctx, resp=resp) for c in complete])
        except JoinedRoomsDiffer:
            # The rooms the streams were given as joined were not (now they are right).
            resp = _new_response(ctx)
            await together(conn, [partial(c, ctx=ctx, resp=resp) for c in complete])
        resp.drop_shadowed_invites()
    elif ctx.memberships_quiet and not ctx.full_state:
        # No membership of the user or of its rooms moved since ``since``: no room is
        # newly joined, so no stream depends on another's output; all go together.
        await together(conn, [partial(p.incremental, ctx=ctx, resp=resp) for p in PROVIDERS])
        resp.drop_shadowed_invites()
    else:
        # Room events first: the other streams look at the rooms it put in the response
        # (the newly joined ones). Their queries are independent of one another.
        first, *others = PROVIDERS
        await first.incremental(conn, ctx, resp)
        await together(conn, [partial(p.incremental, ctx=ctx, resp=resp) for p in others])
    return resp


class SyncHandler:
    """Answers ``/sync`` for authenticated devices."""

    def __init__(
        self,
        engine: Engine,
        notifier: Notifier,
        presence: PresenceTracker | None = None,
        key_counts: Callable[[Device], Awaitable[KeyCounts]] | None = None,
    ) -> None:
        self._engine = engine
        self._notifier = notifier
        self.presence = presence
        self.to_device_acks = ToDeviceAcks()
        self._key_counts = KeyCountCache()
        #: Where a device's one-time-key counts live when the homeserver keeps them (read
        #: at every sync); None: trio-sync's own store (``one_time_keys`` log messages).
        self._homeserver_key_counts = key_counts
        #: Each user's ignored users, with the account-data position they were read at: a
        #: change to them moves that position, so an entry is good while it has not moved.
        self._ignored: dict[str, tuple[int, frozenset[str]]] = {}
        self._lazy_cache: dict[tuple[str, str], dict[str, dict[str, tuple[str, int]]]] = {}
        #: Reads falling due together (a wake-up) share one storage read.
        self.shared_reads = SharedReads(engine, _gather)

    async def resolve_filter(self, user_id: str, text: str | None) -> Filter:
        """The filter a request names: inline JSON (starts with ``{``) or a stored ID."""
        if text is None:
            return NO_FILTER
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

    def begin(self, device: Device) -> None:
        """Mark ``device`` as syncing (presence: it cannot time out while a poll of it is
        parked) until the matching :meth:`end`, called in a ``finally``. Never a
        checkpoint."""
        if self.presence is not None:
            self.presence.start_syncing(device)

    def end(self, device: Device) -> None:
        """End one :meth:`begin` of ``device``. Never a checkpoint."""
        if self.presence is not None:
            self.presence.stop_syncing(device)

    def park(self, waiting: Waiting, scope: trio.CancelScope) -> None:
        """Until :meth:`unpark` (called in a ``finally``), cancel ``scope`` as soon as there
        is something new for ``waiting`` (see :meth:`Notifier.park`). Never a checkpoint."""
        device = waiting.device
        self._notifier.park(device.user_id, waiting.wait_from, device.device_id, scope)

    def unpark(self, waiting: Waiting, scope: trio.CancelScope) -> None:
        """Forget ``scope``, parked by :meth:`park`. Never a checkpoint."""
        self._notifier.unpark(waiting.device.user_id, scope)

    async def sync(
        self, device: Device, req: SyncRequest, park: Park = trio.sleep_forever
    ) -> SyncResponse:
        """Build the response; for an incremental sync, wait up to ``req.timeout_ms`` first.

        A complete sync (no ``since``) and ``full_state=true`` never wait. An incremental
        sync returns as soon as something for this user is committed; on timeout it
        returns an empty response whose ``next_batch`` is not before ``since``. Only a
        request that has to wait awaits ``park()``, in a cancel scope the notifier cancels
        when something arrives and whose deadline is the timeout. Cancellation (or an
        exception out of ``park``) ends the wait at once and leaves nothing behind.

        This is :meth:`start`, the wait and :meth:`resume` in one call; the HTTP endpoint
        runs the same steps itself, so that its parked stack is one frame deep.
        """
        self.begin(device)
        try:
            answer = await self.start(device, req)
            while isinstance(answer, Waiting):
                with trio.CancelScope(deadline=answer.deadline) as scope:
                    self.park(answer, scope)
                    try:
                        await park()
                    finally:
                        self.unpark(answer, scope)
                answer = await self.resume(answer)
            return answer
        finally:
            self.end(device)

    async def start(self, device: Device, req: SyncRequest) -> SyncResponse | Waiting:
        """Everything before the wait: the filter, ``set_presence``, to-device acks, then
        the response if it is ready (no ``since``, ``full_state``, news after ``since``,
        or a timeout already over), else a :class:`Waiting` to park on: the caller waits
        in a cancel scope whose deadline is :attr:`Waiting.deadline`, between :meth:`park`
        and :meth:`unpark`, then calls :meth:`resume`. Call it between :meth:`begin` and
        :meth:`end`.
        Cancellation leaves nothing behind but the writes already committed."""
        filt = await self.resolve_filter(device.user_id, req.filter)
        if self.presence is not None:
            await self.presence.set_device(device, req.set_presence)
        since = req.since
        await self.to_device_acks.acknowledge(self._engine, device, since)
        if since is None or req.full_state:
            SYNC_COMPLETE.inc()
            return await self._build(device, req, since, self.now_token(since), filt)
        deadline = trio.current_time() + req.timeout_ms / 1000
        waiting = Waiting(device, req, filt, deadline, since)
        if self._must_wait(waiting):
            return waiting
        return await self.resume(waiting)

    async def resume(self, waiting: Waiting) -> SyncResponse | Waiting:
        """After a wait (woken, timed out or shut down): the response, or ``waiting``
        again (its ``wait_from`` moved on) when what woke it turned out to hold nothing
        for this device and the deadline has not passed. Cancellation leaves nothing
        behind."""
        device, req, since = waiting.device, waiting.req, waiting.since
        notifier = self._notifier
        while True:
            now = self.now_token(since)
            # Nothing touched this user (or device) after ``since``: the answer is that of
            # the empty range now..now, which needs no storage read once the device's key
            # counts are cached (the notifier wakes a user for everything its /sync shows,
            # which is what makes a long-poll's wait correct in the first place).
            untouched = not notifier.has_news(device.user_id, since, device.device_id)
            resp = await self._build(device, req, now if untouched else since, now, waiting.filt)
            empty = resp.is_empty()
            if not empty or trio.current_time() >= waiting.deadline or notifier.closing:
                (SYNC_EMPTY if empty else SYNC_INCREMENTAL).inc()
                return resp
            # Woken for something that turned out to hold nothing for this user: the
            # range since..now is known empty, so keep waiting from now.
            waiting.wait_from = now
            if self._must_wait(waiting):
                return waiting

    def _must_wait(self, waiting: Waiting) -> bool:
        """Whether ``waiting`` has to park: its deadline is ahead and nothing for it
        happened after its ``wait_from``."""
        device = waiting.device
        return trio.current_time() < waiting.deadline and not self._notifier.has_news(
            device.user_id, waiting.wait_from, device.device_id
        )

    def now_token(self, since: StreamToken | None) -> StreamToken:
        """The token to answer with: the current positions, never before ``since`` except
        for a typing position of another process, which is replaced by this one's."""
        current = self._notifier.current
        if since is None:
            return current
        now = current.union(since)
        if self._notifier.typing.is_stale(since.typing):
            now = now.with_stream("typing", current.typing)
        return now

    async def _build(
        self,
        device: Device,
        req: SyncRequest,
        since: StreamToken | None,
        now: StreamToken,
        filt: Filter,
    ) -> SyncResponse:
        typing = self._notifier.typing
        # Taken with ``now`` (no checkpoint in between), the in-memory joined rooms are
        # those at ``now.pdu``; providers of room-scoped streams need not query them.
        joined = [r for r in self._notifier.rooms_of(device.user_id) if filt.room.allows_room(r)]
        epoch = self._notifier.key_counts_epoch
        if self._homeserver_key_counts is not None:
            key_counts: KeyCounts | None = await self._homeserver_key_counts(device)
        else:
            key_counts = self._key_counts.get(device, epoch)
        ctx = SyncContext(
            device.user_id,
            device.device_id,
            since,
            now,
            filt,
            req.full_state,
            viewer=Viewer(
                device.user_id,
                session_id=device.session_id,
                fmt=filt.event_format,
                fields=filt.event_fields,
                now_ms=int(time.time() * 1000),
            ),
            state_field=req.state_field,
            sent_members=self._sent_members(device) if filt.room.state.lazy_load_members else None,
            typing=typing.view,
            typing_reset=since is not None and typing.is_stale(since.typing),
            joined=sorted(joined),
            ignored_users=self._known_ignored(device.user_id, now.account_data),
            memberships_quiet=since is not None
            and self._notifier.memberships_quiet(device.user_id, since.pdu),
            key_counts=key_counts,
        )
        resp = None
        if since is not None and key_counts is not None and only_typing_moved(since, now):
            try:
                resp = await _gather(NO_STORAGE, ctx)
            except StorageNeeded:
                resp = None
        if resp is None:
            # Everything the gather depends on besides stored data: requests agreeing on
            # it (a client that retried while its first request was still parked) are
            # answered once.
            key = (device, since, now, req.filter, req.full_state, req.state_field)
            resp = await self.shared_reads.read(ctx, key)
        if ctx.ignored_users is not None:
            self._ignored[device.user_id] = (now.account_data, ctx.ignored_users)
        self._key_counts.put(device, epoch, resp)
        self.to_device_acks.sent(device, resp)
        return resp

    def _known_ignored(self, user_id: str, account_data: int) -> frozenset[str] | None:
        known = self._ignored.get(user_id)
        if known is None or known[0] != account_data:
            return None
        return known[1]

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
