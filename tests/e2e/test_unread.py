"""Unread counts: set by notification_data log messages, per room and per thread,
cleared by the user's own read receipt."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, event_id, sync
from .support import ROOM, call, room_with, stays_parked, woken_by

THREAD = "$thread-root"


def counts(
    user: str, notifications: int, highlights: int = 0, thread: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user,
        "room_id": ROOM,
        "unread_notification_count": notifications,
        "unread_highlight_count": highlights,
    }
    if thread is not None:
        body["thread_id"] = thread
    return {"type": "notification_data", "notification_data": body}


def unread(body: dict[str, Any]) -> dict[str, int] | None:
    room = body.get("rooms", {}).get("join", {}).get(ROOM, {})
    value: dict[str, int] | None = room.get("unread_notifications")
    return value


@pytest.fixture
async def room(service: Service) -> RoomLog:
    return await room_with(service, BOB)


async def test_messages_that_notify_increment_notification_count(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    first = await sync(http, bob)
    assert unread(first) == {"notification_count": 0, "highlight_count": 0}
    since = first["next_batch"]

    async def message_and_count() -> None:
        # The room event, then the homeserver's push evaluation of it (one batch).
        await service.ingest([room.message(ROOM, ALICE, "ping"), counts(BOB, 1)])

    body = await woken_by(service, http, bob, since, message_and_count)
    assert unread(body) == {"notification_count": 1, "highlight_count": 0}
    await service.ingest([room.message(ROOM, ALICE, "@bob"), counts(BOB, 2, 1)])
    body = await sync(http, bob, since=body["next_batch"])
    assert unread(body) == {"notification_count": 2, "highlight_count": 1}
    assert unread(await sync(http, bob)) == {"notification_count": 2, "highlight_count": 1}


async def test_own_read_receipt_at_the_latest_event_clears_the_counts(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    older, latest = room.message(ROOM, ALICE, "one"), room.message(ROOM, ALICE, "two")
    await service.ingest([older, latest, counts(BOB, 2), counts(ALICE, 5)])
    since = (await sync(http, bob))["next_batch"]
    # A receipt short of the newest event leaves the counts to the homeserver.
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{event_id(older)}", bob, {})
    assert unread(await sync(http, bob, since=since)) is None
    await call(http, "POST", f"/rooms/{ROOM}/receipt/m.read/{event_id(latest)}", bob, {})
    body = await sync(http, bob, since=since)
    assert unread(body) == {"notification_count": 0, "highlight_count": 0}
    alice = await service.add_device(ALICE, "A")
    assert unread(await sync(http, alice)) == {"notification_count": 5, "highlight_count": 0}


async def test_thread_counts_when_the_filter_asks_for_them(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    last = room.message(ROOM, ALICE, "in thread")
    await service.ingest([last, counts(BOB, 1), counts(BOB, 3, 1, thread=THREAD)])
    threaded = {"room": {"timeline": {"unread_thread_notifications": True}}}
    body = await sync(http, bob, filter=threaded)
    room_body = body["rooms"]["join"][ROOM]
    assert room_body["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert room_body["unread_thread_notifications"] == {
        THREAD: {"notification_count": 3, "highlight_count": 1}
    }
    # Without the flag, threads count into the room's totals.
    plain = await sync(http, bob)
    assert "unread_thread_notifications" not in plain["rooms"]["join"][ROOM]
    assert unread(plain) == {"notification_count": 4, "highlight_count": 1}
    # A threaded receipt at the newest event clears only its thread.
    await call(
        http,
        "POST",
        f"/rooms/{ROOM}/receipt/m.read/{event_id(last)}",
        bob,
        {"thread_id": THREAD},
    )
    body = await sync(http, bob, filter=threaded)
    assert body["rooms"]["join"][ROOM]["unread_thread_notifications"] == {
        THREAD: {"notification_count": 0, "highlight_count": 0}
    }
    assert unread(body) == {"notification_count": 1, "highlight_count": 0}


async def test_counts_of_another_user_wake_nobody_else(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, alice)
    since = (await sync(http, bob))["next_batch"]

    async def count_for_alice() -> None:
        await service.ingest([counts(ALICE, 1)])

    await stays_parked(service, http, bob, since, count_for_alice)
