"""Sliding sync notification counts: a change of a room's counts alone (set by the log,
or cleared by the user's read receipt) sends the room again with its new counts, and
wakes a long-poll when the room is in a window or subscription — and only then."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, event_id
from .sliding_support import parked_then, room_id, room_list, rooms_in_order, sliding
from .support import call


def counts(room: str, notifications: int, highlights: int = 0) -> dict[str, Any]:
    """The homeserver's push evaluation for Bob in ``room`` (a ``notification_data``)."""
    return {
        "type": "notification_data",
        "notification_data": {
            "user_id": BOB,
            "room_id": room,
            "unread_notification_count": notifications,
            "unread_highlight_count": highlights,
        },
    }


def shown(body: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        r: (room["notification_count"], room["highlight_count"])
        for r, room in body["rooms"].items()
    }


@pytest.fixture
async def log(service: Service) -> RoomLog:
    """Rooms 0, 1 and 2 (2 newest), Bob joined to each."""
    return await rooms_in_order(service, 3, BOB)


async def test_a_count_change_alone_resends_the_room(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    request = {"lists": {"all": room_list(0, 2)}}
    first = await sliding(http, bob, request)
    assert shown(first) == {room_id(n): (0, 0) for n in range(3)}
    await service.ingest([counts(room_id(1), 3, 1)])
    second = await sliding(http, bob, request, pos=first["pos"])
    assert shown(second) == {room_id(1): (3, 1)}
    room = second["rooms"][room_id(1)]
    assert room["timeline"] == [] and "initial" not in room
    # Nothing more changed: nothing is sent.
    third = await sliding(http, bob, request, pos=second["pos"])
    assert third["rooms"] == {} and third["pos"] == second["pos"]


async def test_a_read_receipt_that_clears_the_count_wakes_the_long_poll(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    latest = log.message(room_id(0), ALICE, "ping")
    await service.ingest([latest, counts(room_id(0), 1)])
    request = {"lists": {"all": room_list(0, 2)}}
    first = await sliding(http, bob, request)
    assert shown(first)[room_id(0)] == (1, 0)

    async def read() -> None:
        path = f"/rooms/{room_id(0)}/receipt/m.read/{event_id(latest)}"
        await call(http, "POST", path, bob, {})

    answer = await parked_then(service, http, bob, request, first["pos"], read)
    assert answer is not None
    assert shown(answer) == {room_id(0): (0, 0)}


async def test_a_count_change_outside_every_window_keeps_the_poll_parked(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    # The window holds room 2 only; room 0 is subscribed to, room 1 is in neither.
    request = {
        "lists": {"all": room_list(0, 0)},
        "room_subscriptions": {room_id(0): {"timeline_limit": 5}},
    }
    first = await sliding(http, bob, request)
    assert set(first["rooms"]) == {room_id(2), room_id(0)}

    async def outside() -> None:
        await service.ingest([counts(room_id(1), 4)])

    await parked_then(service, http, bob, request, first["pos"], outside, expect_answer=False)

    async def subscribed() -> None:
        await service.ingest([counts(room_id(0), 2, 2)])

    answer = await parked_then(service, http, bob, request, first["pos"], subscribed)
    assert answer is not None
    assert shown(answer) == {room_id(0): (2, 2)}
    # Room 1 enters the window later: it is sent whole, with its counts.
    wider = {**request, "lists": {"all": room_list(0, 2)}}
    later = await sliding(http, bob, wider, pos=answer["pos"])
    assert shown(later) == {room_id(1): (4, 0)}


async def test_a_room_back_in_the_window_brings_counts_changed_while_it_was_out(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    wide = {"lists": {"all": room_list(0, 2)}}
    narrow = {"lists": {"all": room_list(0, 0)}}
    first = await sliding(http, bob, wide)
    assert set(first["rooms"]) == {room_id(n) for n in range(3)}
    second = await sliding(http, bob, narrow, pos=first["pos"])
    assert second["rooms"] == {}
    # Room 1 is out of the window when its counts change, and while the next positions
    # are recorded.
    await service.ingest([counts(room_id(1), 6)])
    third = await sliding(http, bob, narrow, pos=second["pos"])
    assert third["rooms"] == {}
    await service.ingest([log.message(room_id(2), ALICE, "news")])
    fourth = await sliding(http, bob, narrow, pos=third["pos"])
    assert list(fourth["rooms"]) == [room_id(2)]
    back = await sliding(http, bob, wide, pos=fourth["pos"])
    assert shown(back) == {room_id(1): (6, 0)}
