"""The device-list stream: ``device_lists`` on incremental syncs, and the syncing
device's ``device_one_time_keys_count`` / ``device_unused_fallback_key_types``.

``changed`` holds the users sharing a room with the syncing user (or the user itself) whose
keys changed at ``since < p <= now`` on the device-list stream, plus users who joined one
of its rooms, or all members of a room it joined, at ``since < p <= now`` on the PDU
stream. ``left`` holds users who shared a room at ``since`` and share none at ``now``.
:func:`device_list_changes` is also ``GET /keys/changes``.
"""

from __future__ import annotations

import orjson

from ...storage import Array, Conn
from ...storage.rooms import MEMBER, memberships_at
from ...tokens import StreamToken
from ..response import SyncContext, SyncResponse


async def _sharing(conn: Conn, user_id: str, rooms: list[str], at: int) -> set[str]:
    """Users joined at PDU position ``at`` to any of ``rooms``."""
    if not rooms:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT state_key FROM room_state WHERE room_id = ANY($1) AND type = $2 "
        "AND membership = 'join' AND added_at <= $3 AND removed_at > $3",
        Array(rooms),
        MEMBER,
        at,
    )
    return {str(r[0]) for r in rows}


async def device_list_changes(
    conn: Conn,
    user_id: str,
    since: StreamToken,
    now: StreamToken,
    *,
    memberships_quiet: bool = False,
) -> tuple[list[str], list[str]]:
    """``(changed, left)`` for ``user_id`` between ``since`` and ``now`` (see module doc).

    ``memberships_quiet`` says no membership of the user or in its rooms changed in the
    range (known in memory), so the PDU stream need not be looked at."""
    changed: set[str] = set()
    left: set[str] = set()
    if now.device_list > since.device_list:
        rows = await conn.fetch(
            "SELECT user_id FROM key_changes WHERE pos > $1 AND pos <= $2",
            since.device_list,
            now.device_list,
        )
        changed = {str(r[0]) for r in rows}
    joins: list[tuple[str, str]] = []
    leaves: list[tuple[str, str]] = []
    if now.pdu > since.pdu and not memberships_quiet:
        for row in await conn.fetch(
            "SELECT room_id, state_key, membership FROM room_state WHERE type = $1 "
            "AND added_at > $2 AND added_at <= $3",
            MEMBER,
            since.pdu,
            now.pdu,
        ):
            if row[2] == "join":
                joins.append((str(row[0]), str(row[1])))
            elif row[2] in ("leave", "ban"):
                leaves.append((str(row[0]), str(row[1])))
    if not (changed or joins or leaves):
        return [], []
    mine_now = await memberships_at(conn, user_id, now.pdu)
    rooms_now = [r for r, m in mine_now.items() if m.membership == "join"]
    shared_now = await _sharing(conn, user_id, rooms_now, now.pdu) | {user_id}
    joined_now = set(rooms_now)
    for room_id, member in joins:
        if room_id not in joined_now:
            continue
        if member == user_id:
            changed |= await _sharing(conn, user_id, [room_id], now.pdu)
        else:
            changed.add(member)
    gone: set[str] = set()
    for room_id, member in leaves:
        if member == user_id:
            gone |= await _sharing(conn, user_id, [room_id], since.pdu)
        else:
            gone.add(member)
    left = {u for u in gone if u not in shared_now}
    if left:
        mine_then = await memberships_at(conn, user_id, since.pdu)
        rooms_then = [r for r, m in mine_then.items() if m.membership == "join"]
        left &= await _sharing(conn, user_id, rooms_then, since.pdu)
    changed &= shared_now
    return sorted(changed - left), sorted(left)


class DeviceListStream:
    """Key changes of users the syncing user shares rooms with, and its own key counts."""

    async def _counts(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        if ctx.key_counts is not None:
            resp.one_time_keys_count, resp.unused_fallback_key_types = ctx.key_counts
            return
        row = await conn.fetchrow(
            "SELECT one_time_key_counts, fallback_key_types FROM device_key_counts "
            "WHERE user_id = $1 AND device_id = $2",
            ctx.user_id,
            ctx.device_id,
        )
        if row is not None:
            resp.one_time_keys_count = orjson.loads(row[0])
            resp.unused_fallback_key_types = orjson.loads(row[1])

    async def complete(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        await self._counts(conn, ctx, resp)

    async def incremental(self, conn: Conn, ctx: SyncContext, resp: SyncResponse) -> None:
        assert ctx.since is not None
        changed, left = await device_list_changes(
            conn, ctx.user_id, ctx.since, ctx.now, memberships_quiet=ctx.memberships_quiet
        )
        resp.device_lists_changed = changed
        resp.device_lists_left = left
        await self._counts(conn, ctx, resp)
