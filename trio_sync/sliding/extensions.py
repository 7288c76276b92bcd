"""Sliding sync extensions, served by the ``/sync`` stream providers.

Each enabled extension runs its provider(s) from :mod:`trio_sync.sync.streams` on a
scratch :class:`~trio_sync.sync.response.SyncResponse`, with the connection's token as
``since`` and the rooms the extension covers as the joined rooms, and reshapes what they
produced. A disabled extension runs nothing.

* ``to_device``: the device's inbox after the extension's own ``since`` (which
  acknowledges, and deletes, what came before it), at most ``limit``; ``next_batch``.
* ``e2ee``: ``device_lists`` (incremental only), one-time-key counts, fallback key types.
* ``account_data``: global, and per room for the rooms covered; a room sent ``initial``
  gets all of its account data.
* ``receipts``, ``typing``: per room, for the rooms covered; all of them for rooms sent
  ``initial``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import orjson

from ..filters import Filter
from ..storage import Conn
from ..storage.rounds import Read, together
from ..sync.response import SyncContext, SyncResponse
from ..sync.streams import (
    AccountDataStream,
    DeviceListStream,
    ReceiptStream,
    StreamProvider,
    ToDeviceStream,
    TypingStream,
)
from ..sync.streams.device_lists import device_list_changes
from ..sync.timeline import Viewer
from ..tokens import StreamToken
from ..typing_state import TypingView
from .request import ExtensionRequest, SlidingRequest

_TO_DEVICE = ToDeviceStream()
_DEVICE_LISTS = DeviceListStream()
_ACCOUNT_DATA = AccountDataStream()
_RECEIPTS = ReceiptStream()
_TYPING = TypingStream()


@dataclass(slots=True)
class ExtensionScope:
    """What the extensions need to know about the response being built."""

    user_id: str
    device_id: str
    since: StreamToken | None
    now: StreamToken
    #: Rooms the user is joined to that each list window / subscription covers.
    list_rooms: dict[str, list[str]]
    subscribed: list[str]
    joined: frozenset[str]
    #: Rooms of this response sent ``initial``.
    initial: set[str]
    typing: TypingView = field(default_factory=lambda: MappingProxyType({}))
    typing_reset: bool = False
    #: No membership of the user or in its rooms changed after ``since`` (known in
    #: memory): device list changes need not look at the PDU stream.
    memberships_quiet: bool = False


def _covered(scope: ExtensionScope, ext: ExtensionRequest) -> list[str]:
    """The joined rooms an extension covers: its ``lists`` (``*`` or absent: all) and
    ``rooms`` (``*`` or absent: every subscription)."""
    names = scope.list_rooms if ext.lists is None or "*" in ext.lists else ext.lists
    rooms: dict[str, None] = {}
    for name in names:
        rooms.update(dict.fromkeys(scope.list_rooms.get(name, ())))
    if ext.rooms is None or "*" in ext.rooms:
        rooms.update(dict.fromkeys(scope.subscribed))
    else:
        rooms.update(dict.fromkeys(ext.rooms))
    return sorted(r for r in rooms if r in scope.joined)


def _context(scope: ExtensionScope, since: StreamToken | None, joined: list[str]) -> SyncContext:
    return SyncContext(
        scope.user_id,
        scope.device_id,
        since,
        scope.now,
        Filter(),
        viewer=Viewer(scope.user_id),
        joined=joined,
        typing=scope.typing,
        typing_reset=scope.typing_reset,
        memberships_quiet=scope.memberships_quiet,
    )


async def _run(
    conn: Conn,
    provider: StreamProvider,
    scope: ExtensionScope,
    rooms: list[str],
    *,
    fresh: set[str] | None = None,
) -> SyncResponse:
    """Run ``provider`` as an incremental (or, without ``since``, complete) sync over
    ``rooms``; ``fresh`` rooms get their whole current state."""
    ctx = _context(scope, scope.since, rooms)
    resp = SyncResponse(next_batch=scope.now)
    if fresh:
        resp.fresh_rooms = set(fresh)
    if scope.since is None:
        await provider.complete(conn, ctx, resp)
    else:
        await provider.incremental(conn, ctx, resp)
    return resp


def _ephemeral(resp: SyncResponse, event_type: str) -> dict[str, Any]:
    out = {}
    for room_id, room in resp.join.items():
        for text in room.ephemeral:
            if f'"type":"{event_type}"' in text:
                out[room_id] = orjson.Fragment(text)
    return out


async def to_device(conn: Conn, scope: ExtensionScope, ext: ExtensionRequest) -> dict[str, Any]:
    since = ext.since or 0
    ctx = _context(scope, StreamToken(to_device=since), [])
    resp = SyncResponse(next_batch=scope.now)
    await _TO_DEVICE.pending(conn, ctx, resp, since, ext.limit)
    return {
        "next_batch": str(max(resp.next_batch.to_device, since)),
        "events": [orjson.Fragment(e) for e in resp.to_device],
    }


async def e2ee(conn: Conn, scope: ExtensionScope) -> dict[str, Any]:
    # The device's key counts (what a complete sync gives) and, incrementally, the
    # device list changes, read together.
    ctx = _context(scope, scope.since, [])
    resp = SyncResponse(next_batch=scope.now)
    reads: list[Read] = [partial(_DEVICE_LISTS.complete, ctx=ctx, resp=resp)]
    if scope.since is not None:
        reads.append(
            partial(
                device_list_changes,
                user_id=scope.user_id,
                since=scope.since,
                now=scope.now,
                memberships_quiet=scope.memberships_quiet,
            )
        )
    _, *changes = await together(conn, reads)
    if changes:
        resp.device_lists_changed, resp.device_lists_left = changes[0]
    out: dict[str, Any] = {
        "device_lists": {"changed": resp.device_lists_changed, "left": resp.device_lists_left},
        "device_one_time_keys_count": resp.one_time_keys_count or {},
    }
    if resp.unused_fallback_key_types is not None:
        out["device_unused_fallback_key_types"] = resp.unused_fallback_key_types
    return out


async def account_data(conn: Conn, scope: ExtensionScope, ext: ExtensionRequest) -> dict[str, Any]:
    rooms = _covered(scope, ext)
    resp = await _run(conn, _ACCOUNT_DATA, scope, [r for r in rooms if r not in scope.initial])
    fresh = [r for r in rooms if r in scope.initial]
    if fresh and scope.since is not None:
        whole = _context(scope, None, fresh)
        extra = SyncResponse(next_batch=scope.now)
        await _ACCOUNT_DATA.complete(conn, whole, extra)
        for room_id, room in extra.join.items():
            resp.joined_room(room_id).account_data = room.account_data
    return {
        "global": [orjson.Fragment(e) for e in resp.account_data],
        "rooms": {
            r: [orjson.Fragment(e) for e in room.account_data]
            for r, room in resp.join.items()
            if room.account_data
        },
    }


async def receipts(conn: Conn, scope: ExtensionScope, ext: ExtensionRequest) -> dict[str, Any]:
    resp = await _run(conn, _RECEIPTS, scope, _covered(scope, ext), fresh=scope.initial)
    return {"rooms": _ephemeral(resp, "m.receipt")}


async def typing(conn: Conn, scope: ExtensionScope, ext: ExtensionRequest) -> dict[str, Any]:
    resp = await _run(conn, _TYPING, scope, _covered(scope, ext), fresh=scope.initial)
    return {"rooms": _ephemeral(resp, "m.typing")}


async def build_extensions(
    conn: Conn, scope: ExtensionScope, req: SlidingRequest
) -> dict[str, Any]:
    """The ``extensions`` object for the enabled extensions of ``req``, read together
    (:func:`~trio_sync.storage.rounds.together`: one round trip for all on PostgreSQL)."""
    reads: dict[str, Read] = {}
    ext = req.extension("to_device")
    if ext is not None:
        reads["to_device"] = partial(to_device, scope=scope, ext=ext)
    if req.extension("e2ee") is not None:
        reads["e2ee"] = partial(e2ee, scope=scope)
    ext = req.extension("account_data")
    if ext is not None:
        reads["account_data"] = partial(account_data, scope=scope, ext=ext)
    ext = req.extension("receipts")
    if ext is not None:
        reads["receipts"] = partial(receipts, scope=scope, ext=ext)
    ext = req.extension("typing")
    if ext is not None:
        reads["typing"] = partial(typing, scope=scope, ext=ext)
    return dict(zip(reads, await together(conn, list(reads.values())), strict=True))


def has_news(extensions: dict[str, Any], since: StreamToken | None, given: Sequence[str]) -> bool:
    """Whether ``extensions`` carries anything a client must see now (key counts alone
    are not news; everything is news on a new connection)."""
    if since is None and given:
        return True
    if extensions.get("to_device", {}).get("events"):
        return True
    lists = extensions.get("e2ee", {}).get("device_lists", {})
    if lists.get("changed") or lists.get("left"):
        return True
    data = extensions.get("account_data", {})
    if data.get("global") or data.get("rooms"):
        return True
    return bool(
        extensions.get("receipts", {}).get("rooms") or extensions.get("typing", {}).get("rooms")
    )
