"""``timeline.limited`` tells the truth: it is true exactly when an event the user may see
and the filter admits lies between ``since`` (or the start of the room) and the timeline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, timeline_ids
from .rooms_support import ROOM, Rooms, make_rooms


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def limited(body: dict[str, Any]) -> bool:
    value = body["rooms"]["join"][ROOM]["timeline"]["limited"]
    assert isinstance(value, bool)
    return value


def timeline_filter(limit: int, **rules: Any) -> dict[str, Any]:
    return {"room": {"timeline": {"limit": limit, **rules}}}


async def joined(rooms: Rooms) -> list[str]:
    """Bob's room with Alice in it; every event ID so far."""
    created = await rooms.room()
    return [*created, await rooms.join(ROOM, ALICE)]


def topic(rooms: Rooms, text: str) -> dict[str, Any]:
    return rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": text}, "")


async def test_exactly_limit_new_events_is_not_limited(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    sent = await rooms.say(ROOM, BOB, "a", "b", "c")
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(3))
    assert timeline_ids(body, "join", ROOM) == sent
    assert limited(body) is False


async def test_one_more_than_limit_new_events_is_limited(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    sent = await rooms.say(ROOM, BOB, "a", "b", "c", "d")
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(3))
    assert timeline_ids(body, "join", ROOM) == sent[1:]
    assert limited(body) is True


async def test_complete_sync_is_limited_only_with_older_history(rooms: Rooms) -> None:
    history = await joined(rooms)
    history += await rooms.say(ROOM, BOB, "a", "b")
    body = await rooms.sync(ALICE, filter=timeline_filter(len(history)))
    assert timeline_ids(body, "join", ROOM) == history
    assert limited(body) is False
    body = await rooms.sync(ALICE, filter=timeline_filter(len(history) - 1))
    assert timeline_ids(body, "join", ROOM) == history[1:]
    assert limited(body) is True


async def test_filtered_out_events_do_not_make_the_timeline_limited(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    await rooms.say(ROOM, BOB, "m1")
    (t1,) = await rooms.ingest(topic(rooms, "one"))
    await rooms.say(ROOM, BOB, "m2", "m3")
    filt = timeline_filter(1, not_types=["m.room.message"])
    body = await rooms.sync(ALICE, since=since, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [t1]
    assert limited(body) is False


async def test_an_admitted_event_before_the_timeline_makes_it_limited(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (t1,) = await rooms.ingest(topic(rooms, "one"))
    await rooms.say(ROOM, BOB, "m1")
    (t2,) = await rooms.ingest(topic(rooms, "two"))
    await rooms.say(ROOM, BOB, "m2")
    filt = timeline_filter(1, not_types=["m.room.message"])
    body = await rooms.sync(ALICE, since=since, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [t2]
    assert limited(body) is True
    assert t1 not in timeline_ids(body, "join", ROOM)


async def test_senders_filter_and_limited(rooms: Rooms) -> None:
    await joined(rooms)
    await rooms.join(ROOM, CAROL)
    since = await rooms.now(ALICE)
    (c1,) = await rooms.say(ROOM, CAROL, "c1")
    await rooms.say(ROOM, BOB, "b1", "b2")
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(1, senders=[CAROL]))
    assert timeline_ids(body, "join", ROOM) == [c1]
    assert limited(body) is False
    (c2,) = await rooms.say(ROOM, CAROL, "c2")
    await rooms.say(ROOM, BOB, "b3")
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(1, senders=[CAROL]))
    assert timeline_ids(body, "join", ROOM) == [c2]
    assert limited(body) is True


async def test_complete_sync_with_types_filter_counts_only_admitted_events(rooms: Rooms) -> None:
    await joined(rooms)
    sent = await rooms.say(ROOM, BOB, "a", "b")
    filt = timeline_filter(2, types=["m.room.message"])
    body = await rooms.sync(ALICE, filter=filt)
    assert timeline_ids(body, "join", ROOM) == sent
    assert limited(body) is False
    more = await rooms.say(ROOM, BOB, "c")
    body = await rooms.sync(ALICE, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [sent[1], *more]
    assert limited(body) is True


async def test_events_hidden_by_history_visibility_do_not_make_it_limited(rooms: Rooms) -> None:
    await rooms.room(setting="joined")
    since = await rooms.now(ALICE)
    await rooms.say(ROOM, BOB, *(f"before alice {i}" for i in range(5)))
    join = await rooms.join(ROOM, ALICE)
    after = await rooms.say(ROOM, BOB, "welcome")
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(2))
    assert timeline_ids(body, "join", ROOM) == [join, *after]
    assert limited(body) is False
    body = await rooms.sync(ALICE, filter=timeline_filter(1, types=["m.room.message"]))
    assert timeline_ids(body, "join", ROOM) == after
    assert limited(body) is False


async def test_incremental_sync_after_a_hidden_gap_is_not_limited(rooms: Rooms) -> None:
    await rooms.room(setting="invited")
    since = await rooms.now(ALICE)
    await rooms.say(ROOM, BOB, "hidden 1", "hidden 2", "hidden 3")
    (invite,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "invite", sender=BOB))
    seen = await rooms.say(ROOM, BOB, "seen")
    join = await rooms.join(ROOM, ALICE)
    body = await rooms.sync(ALICE, since=since, filter=timeline_filter(3))
    assert timeline_ids(body, "join", ROOM) == [invite, *seen, join]
    assert limited(body) is False
