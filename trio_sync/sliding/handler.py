"""Simplified Sliding Sync by stage: parse → load connection → build (→ wait → build) →
record → shape.

The connection's state at the request's ``pos`` is read first (400 ``M_UNKNOWN_POS``
when it is not a live position of this user, device and ``conn_id``). A response is then
built against the current token; when it holds nothing new for the client and
``timeout`` allows, the request parks in the notifier exactly as ``/sync`` does — a
``trio.move_on_at`` around :meth:`Notifier.wait_for_update` — and builds again when
woken. Building reads the candidate rooms with what sorting and filtering need (none
when all of it is known in memory), then the rooms to send and the extensions, all
bounded by the same token: one snapshot on PostgreSQL, two on SQLite. A response that
changes what the client has is recorded as a new position in one write; one that
changes nothing returns the same ``pos``.
Cancellation (client gone) ends the wait at once; nothing is recorded then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

import orjson
import trio

from ..notifier import Notifier
from ..storage import Conn, Engine
from ..storage.account_data import ignored_users
from ..storage.accounts import Device
from ..storage.rounds import Read, together
from ..sync.handler import SyncHandler
from ..sync.memory_only import NO_STORAGE, StorageNeeded
from ..sync.timeline import Viewer
from ..tokens import StreamToken
from .extensions import ExtensionScope, build_extensions, has_news
from .request import ListRequest, RoomConfig, SlidingRequest
from .required_state import newly_required
from .room_lists import (
    Candidate,
    Recency,
    RecencyUpdate,
    RoomFacts,
    bump_of,
    candidates,
    facts_needed,
    latest_of,
    memberships,
    passes,
    read_facts,
    read_recency,
    sort_rooms,
)
from .rooms import BuildScope, RoomPlan, build_rooms, counts_changed
from .store import (
    POSITION_TTL_MS,
    Connection,
    ListState,
    SentRoom,
    load_connection,
    now_ms,
    record_position,
)

#: How many users' memberships are kept (least recently read dropped first).
MEMBERSHIP_CACHE_USERS = 10_000


T = TypeVar("T")


@dataclass(slots=True)
class _Found:
    """What the first read of a build found."""

    #: Every membership of the user (see :func:`memberships`).
    every: dict[str, Candidate]
    rooms: dict[str, Candidate]
    recency: RecencyUpdate
    facts: RoomFacts
    ignored: frozenset[str]


async def _find_rooms(
    conn: Conn,
    user_id: str,
    now: StreamToken,
    left_after: int | None,
    known: dict[str, Candidate] | None,
    account: tuple[frozenset[str], frozenset[str]] | None,
    recency: Recency,
    as_of: int,
    lists: list[ListRequest],
) -> _Found:
    """The candidate rooms, recency, filter facts and ignored users; what is passed in
    known (memberships, ``(ignored users, m.direct rooms)``) is not read again."""
    ignored, every = await together(
        conn,
        [
            partial(ignored_users, user_id=user_id) if account is None else _given(account[0]),
            partial(memberships, user_id=user_id, upto=now.pdu, invites_upto=now.invite)
            if known is None
            else _given(known),
        ],
    )
    found = candidates(every, left_after)
    if ignored:
        found = {
            r: c
            for r, c in found.items()
            if c.invite_json is None or orjson.loads(c.invite_json).get("sender") not in ignored
        }
    spaces = sorted({s for lst in lists for s in lst.filters.spaces or ()})
    need = facts_needed(lists) | {"direct"}
    direct = None if account is None else account[1]
    update, facts = await together(
        conn,
        [
            partial(read_recency, known=recency, as_of=as_of, room_ids=list(found), upto=now.pdu),
            partial(
                read_facts,
                user_id=user_id,
                rooms=found,
                spaces=spaces,
                upto=now.pdu,
                need=need,
                direct_data=direct,
            ),
        ],
    )
    return _Found(every, found, update, facts, ignored)


def _given(value: T) -> Read:
    """A read that reads nothing and returns ``value``."""

    async def read(conn: Conn) -> T:
        return value

    return read


@dataclass(slots=True)
class _Plan:
    """What a response builds, decided from what the first read found."""

    scope: BuildScope
    plans: list[RoomPlan]
    quiet: list[RoomPlan]
    ext: ExtensionScope
    lists_out: dict[str, Any]
    lists_state: dict[str, ListState]
    #: Whether the lists changed for the client.
    news: bool


@dataclass(slots=True)
class _Built:
    body: dict[str, Any]
    lists: dict[str, ListState]
    sent: dict[str, SentRoom] = field(default_factory=dict)
    news: bool = False


async def _build_rooms_and_extensions(
    conn: Conn,
    scope: BuildScope,
    plans: list[RoomPlan],
    quiet: list[RoomPlan],
    ext_scope: ExtensionScope,
    req: SlidingRequest,
) -> tuple[dict[str, dict[str, Any]], dict[str, SentRoom], dict[str, Any]]:
    """One snapshot: the rooms of ``plans``, those of ``quiet`` whose notification counts
    changed since they were sent, and the extensions, all read together (which quiet
    rooms changed is asked in the first round, with the other rooms' first queries)."""

    async def changed(conn: Conn) -> tuple[dict[str, dict[str, Any]], dict[str, SentRoom]]:
        moved = await counts_changed(conn, scope.user_id, quiet, scope.now.notification)
        return await build_rooms(conn, scope, moved) if moved else ({}, {})

    reads: list[Read] = [partial(build_rooms, scope=scope, plans=plans)]
    if quiet:
        reads.append(changed)
    if req.extensions:
        reads.append(partial(build_extensions, scope=ext_scope, req=req))
    results = await together(conn, reads)
    rooms, sent = results[0]
    if quiet:
        more_rooms, more_sent = results[1]
        rooms, sent = {**rooms, **more_rooms}, {**sent, **more_sent}
    return rooms, sent, results[-1] if req.extensions else {}


def _wants_sending(
    c: Candidate,
    config: RoomConfig,
    sent: SentRoom | None,
    latest: int,
    user_id: str,
) -> bool:
    """Whether a room in a window or subscription must be sent (see rooms.py): it is
    new to the connection, has news, a larger timeline, or state the request newly asks
    for. (A change of its notification counts alone is found while building.)"""
    if sent is None or latest > sent.sent_upto:
        return True
    if c.membership in ("invite", "knock"):
        return False
    if config.timeline_limit > sent.timeline_limit:
        return True
    wanted = config.required_state.resolve(user_id)
    return bool(newly_required(sent.required_state, wanted).pairs)


class SlidingSyncHandler:
    """Answers sliding sync requests for authenticated devices."""

    def __init__(self, engine: Engine, notifier: Notifier, sync: SyncHandler) -> None:
        self._engine = engine
        self._notifier = notifier
        self._sync = sync
        self._recency = Recency()
        #: Each user's memberships with the PDU and invite positions they were read at:
        #: good while the notifier saw no membership change and no invite moved.
        self._memberships: dict[str, tuple[int, int, dict[str, Candidate]]] = {}
        #: Each user's ignored users and ``m.direct`` rooms, with the account-data
        #: position they were read at (good while it has not moved).
        self._account: dict[str, tuple[int, frozenset[str], frozenset[str]]] = {}
        #: Each connection's live positions, as recorded in the database.
        self._connections: dict[tuple[str, str, str], dict[int, Connection]] = {}

    async def sync(self, device: Device, req: SlidingRequest) -> dict[str, Any]:
        """The response body; waits up to ``req.timeout_ms`` for news when ``pos`` is given.

        Cancellation ends the wait at once and records nothing.
        """
        presence = self._sync.presence
        if presence is None:
            return await self._sliding(device, req)
        with presence.syncing(device):
            await presence.set_device(device, req.set_presence)
            return await self._sliding(device, req)

    async def _sliding(self, device: Device, req: SlidingRequest) -> dict[str, Any]:
        key = (device.user_id, device.device_id, req.conn_id)
        state = self._connections.get(key, {}).get(req.pos or -1)
        if req.pos is None:
            state = Connection()  # a new connection: nothing to read
        elif state is None or now_ms() - state.created_ms > POSITION_TTL_MS:
            state = await self._engine.read(
                load_connection, device.user_id, device.device_id, req.conn_id, req.pos
            )
        ext = req.extension("to_device")
        if ext is not None and ext.since:
            await self._sync.to_device_acks.acknowledge(
                self._engine, device, StreamToken(to_device=ext.since)
            )
        subscriptions = {r: c for r, c in state.subscriptions.items() if r not in req.unsubscribe}
        subscriptions.update(req.subscriptions)
        deadline = trio.current_time() + req.timeout_ms / 1000
        while True:
            now = self._sync.now_token(state.token)
            built = await self._build(device, req, state, subscriptions, now)
            if (
                built.news
                or state.pos is None
                or trio.current_time() >= deadline
                or self._notifier.closing
            ):
                break
            with trio.move_on_at(deadline):
                await self._notifier.wait_for_update(device.user_id, now, device.device_id)
        changed_subs = subscriptions != state.subscriptions
        if built.news or changed_subs or state.pos is None:
            # A position of a known connection is one statement on PostgreSQL.
            write = self._engine.write if state.id is None else self._engine.write_one
            connection_id, pos = await write(
                record_position,
                device.user_id,
                device.device_id,
                req.conn_id,
                state,
                now,
                subscriptions,
                built.lists,
                built.sent,
            )
            self._remember_position(
                key,
                state,
                Connection(
                    connection_id,
                    pos,
                    now_ms(),
                    now,
                    subscriptions,
                    built.lists,
                    {**state.rooms, **built.sent},
                ),
            )
        else:
            pos = state.pos
        body = {"pos": str(pos), **built.body}
        if req.txn_id is not None:
            body["txn_id"] = req.txn_id
        return body

    def _remember_position(
        self, key: tuple[str, str, str], built_on: Connection, made: Connection
    ) -> None:
        """Keep the connection's live positions in memory: the one the request built on
        (acknowledged) and the new one; the database holds the same."""
        self._connections.pop(key, None)
        live = (
            {made.pos: made} if built_on.pos is None else {built_on.pos: built_on, made.pos: made}
        )
        self._connections[key] = {p: c for p, c in live.items() if p is not None}
        while len(self._connections) > MEMBERSHIP_CACHE_USERS:
            del self._connections[next(iter(self._connections))]

    def _known_memberships(self, user_id: str, now: StreamToken) -> dict[str, Candidate] | None:
        cached = self._memberships.get(user_id)
        if cached is None:
            return None
        pdu, invite, every = cached
        if invite != now.invite or pdu > now.pdu:
            return None
        if not self._notifier.memberships_quiet(user_id, pdu):
            return None
        return every

    def _remember_memberships(
        self, user_id: str, now: StreamToken, every: dict[str, Candidate]
    ) -> None:
        self._memberships.pop(user_id, None)
        self._memberships[user_id] = (now.pdu, now.invite, every)
        while len(self._memberships) > MEMBERSHIP_CACHE_USERS:
            del self._memberships[next(iter(self._memberships))]

    async def _build(
        self,
        device: Device,
        req: SlidingRequest,
        state: Connection,
        subscriptions: Mapping[str, RoomConfig],
        now: StreamToken,
    ) -> _Built:
        user_id = device.user_id
        since = state.token
        cached = self._known_memberships(user_id, now)
        known_account = self._account.get(user_id)
        account = (
            known_account[1:] if known_account and known_account[0] == now.account_data else None
        )
        args = (
            user_id,
            now,
            since.pdu if since is not None else None,
            cached,
            account,
            self._recency,
            self._recency.as_of,
            list(req.lists.values()),
        )
        try:
            # Everything may be known already: then no storage hop for the rooms.
            found = await _find_rooms(NO_STORAGE, *args)
        except StorageNeeded:
            found = None
            if self._engine.name != "postgres":
                # SQLite runs an operation in a thread of its own: plan in Trio's.
                found = await self._engine.read_settled(_find_rooms, *args)
        if found is not None:
            plan = self._plan(device, req, state, subscriptions, now, cached, found)
            rooms, sent_rooms, extensions = await self._engine.read_settled(
                _build_rooms_and_extensions, plan.scope, plan.plans, plan.quiet, plan.ext, req
            )
        else:
            # PostgreSQL runs the operation in Trio's thread: finding the rooms, planning
            # and building them is one storage read (one bridge crossing). Like /sync's,
            # it reads only what settled at ``now``: no BEGIN or COMMIT.
            async def find_and_build(
                conn: Conn,
            ) -> tuple[
                _Plan, tuple[dict[str, dict[str, Any]], dict[str, SentRoom], dict[str, Any]]
            ]:
                found = await _find_rooms(conn, *args)
                plan = self._plan(device, req, state, subscriptions, now, cached, found)
                return plan, await _build_rooms_and_extensions(
                    conn, plan.scope, plan.plans, plan.quiet, plan.ext, req
                )

            plan, (rooms, sent_rooms, extensions) = await self._engine.read_settled(find_and_build)
        ext = req.extension("to_device")
        if ext is not None and extensions["to_device"]["events"]:
            self._sync.to_device_acks.sent_upto(device, int(extensions["to_device"]["next_batch"]))
        news = plan.news or bool(rooms) or has_news(extensions, since, list(req.extensions))
        body: dict[str, Any] = {"lists": plan.lists_out, "rooms": rooms, "extensions": extensions}
        return _Built(body, plan.lists_state, sent_rooms, news)

    def _plan(
        self,
        device: Device,
        req: SlidingRequest,
        state: Connection,
        subscriptions: Mapping[str, RoomConfig],
        now: StreamToken,
        cached: dict[str, Candidate] | None,
        found: _Found,
    ) -> _Plan:
        """What to build, from what the first read found (and remembering it)."""
        user_id = device.user_id
        since = state.token
        if found.facts.direct_data is not None:
            self._account.pop(user_id, None)
            self._account[user_id] = (now.account_data, found.ignored, found.facts.direct_data)
            while len(self._account) > MEMBERSHIP_CACHE_USERS:
                del self._account[next(iter(self._account))]
        self._recency.merge(found.recency)
        if cached is None:
            self._remember_memberships(user_id, now, found.every)
        recency = self._recency
        # Rooms to consider, with the config they are sent with (largest of all asks).
        configs: dict[str, RoomConfig] = {}
        lists_out: dict[str, Any] = {}
        lists_state: dict[str, ListState] = {}
        list_rooms: dict[str, list[str]] = {}
        news = False
        for name, lst in req.lists.items():
            ordered = sort_rooms(
                (c for c in found.rooms.values() if passes(lst.filters, c, found.facts)), recency
            )
            ops = []
            window: dict[str, None] = {}
            for start, end in lst.ranges:
                ids = [c.room_id for c in ordered[start : end + 1]]
                window.update(dict.fromkeys(ids))
                ops.append({"op": "SYNC", "range": [start, end], "room_ids": ids})
            for room_id in window:
                known = configs.get(room_id)
                configs[room_id] = lst.room if known is None else known.merge(lst.room)
            lists_out[name] = {"count": len(ordered), "ops": ops}
            lists_state[name] = ListState(len(ordered), list(window))
            list_rooms[name] = list(window)
            before = state.lists.get(name)
            if before is None or before.count != len(ordered) or before.rooms != list(window):
                news = True
        for room_id, config in subscriptions.items():
            if room_id in found.rooms:
                known = configs.get(room_id)
                configs[room_id] = config if known is None else known.merge(config)
        plans = []
        # Rooms with nothing new but perhaps new notification counts. A room that was in
        # a window or subscription when ``since`` was built had its counts looked at up
        # to ``since`` then (sent, or found unchanged).
        quiet: list[RoomPlan] = []
        looked_at = {r for lst in state.lists.values() for r in lst.rooms} | set(
            state.subscriptions
        )
        for room_id, config in configs.items():
            c = found.rooms[room_id]
            sent = state.rooms.get(room_id)
            if _wants_sending(c, config, sent, latest_of(c, recency), user_id):
                plans.append(RoomPlan(c, config, sent, bump_of(c, recency)))
            elif c.membership == "join" and sent is not None:
                counts_at = sent.counts_at
                if since is not None and room_id in looked_at:
                    counts_at = max(counts_at, since.notification)
                if counts_at < now.notification:
                    sent = replace(sent, counts_at=counts_at)
                    quiet.append(RoomPlan(c, config, sent, bump_of(c, recency)))
        scope = BuildScope(
            user_id,
            Viewer(
                user_id,
                session_id=device.session_id,
                ignored=found.ignored,
                now_ms=int(time.time() * 1000),
            ),
            since,
            now,
            found.facts.direct,
        )
        typing = self._notifier.typing
        ext_scope = ExtensionScope(
            user_id,
            device.device_id,
            since,
            now,
            list_rooms,
            [r for r in subscriptions if r in found.rooms],
            frozenset(r for r, c in found.rooms.items() if c.membership == "join"),
            {p.candidate.room_id for p in plans if p.sent is None},
            typing.view,
            since is not None and typing.is_stale(since.typing),
            since is not None and self._notifier.memberships_quiet(user_id, since.pdu),
        )
        return _Plan(scope, plans, quiet, ext_scope, lists_out, lists_state, news)
