"""Room history on request beyond the plain stream: backfilled events (``old_room_event``)
reached by ``/messages`` and ``/context`` in topological order where they precede the
stored history, never by ``/sync``; and the member events lazy loading adds to
``/messages`` pages, those in effect at the page's events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.storage import Conn, migrate

from .conftest import ALICE, BOB, CAROL, event_id, rooms_of, timeline_ids
from .rooms_support import ROOM, Message, Rooms, make_rooms, pdu_of

LAZY = {"lazy_load_members": True}


def old_room_event(message: Message) -> Message:
    """The room server's backfill notice for the event of a ``new_room_event`` message."""
    return {"type": "old_room_event", "old_room_event": {"event": pdu_of(message)}}


async def gap_then_backfill(
    rooms: Rooms, setting: str
) -> tuple[list[str], list[str], str, list[str]]:
    """Bob's room with ``setting``; five messages of Bob's the server first misses; Alice's
    join and three more messages; then the five come as backfill, newest first. The IDs
    of the room's first events, of the backfilled ones, of Alice's join and of the last
    three."""
    created = await rooms.room(setting=setting)
    missed = [rooms.log.message(ROOM, BOB, f"old {i}") for i in range(5)]
    join = await rooms.join(ROOM, ALICE)
    late = await rooms.say(ROOM, BOB, "new 0", "new 1", "new 2")
    await rooms.ingest_raw(*(old_room_event(m) for m in reversed(missed)))
    return created, [event_id(m) for m in missed], join, late


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def names(body: dict[str, Any]) -> dict[str, str | None]:
    """Display names of the member events in a ``/messages`` body's ``state``."""
    return {
        e["state_key"]: e["content"].get("displayname")
        for e in body.get("state", [])
        if e["type"] == "m.room.member"
    }


async def test_lazy_members_are_those_in_effect_at_the_page(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE, displayname="Old Alice")
    early = await rooms.say(ROOM, ALICE, "a1", "a2", "a3")
    await rooms.join(ROOM, ALICE, displayname="New Alice")
    late = await rooms.say(ROOM, ALICE, "a4", "a5")
    await rooms.join(ROOM, BOB, displayname="Bob later")
    messages_only = {**LAZY, "types": ["m.room.message"]}
    page = await rooms.messages(BOB, ROOM, limit=2, filter=messages_only)
    assert [e["event_id"] for e in page["chunk"]] == late[::-1]
    assert names(page) == {ALICE: "New Alice"}
    page = await rooms.messages(BOB, ROOM, limit=3, filter=messages_only, **{"from": page["end"]})
    assert [e["event_id"] for e in page["chunk"]] == early[::-1]
    assert names(page) == {ALICE: "Old Alice"}
    forwards = await rooms.messages(BOB, ROOM, dir="f", limit=3, filter=messages_only)
    assert [e["event_id"] for e in forwards["chunk"]] == early
    assert names(forwards) == {ALICE: "Old Alice"}


async def test_back_pagination_from_prev_batch_reaches_backfilled_history(rooms: Rooms) -> None:
    created, backfilled, join, late = await gap_then_backfill(rooms, "shared")
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 2}}})
    timeline = body["rooms"]["join"][ROOM]["timeline"]
    assert timeline_ids(body, "join", ROOM) == late[1:]
    history = [*created, *backfilled, join, *late]
    # Pages of 2 split the backfilled run: tokens inside it lead on.
    back = await rooms.page_all(ALICE, ROOM, limit=2, **{"from": timeline["prev_batch"]})
    assert back == history[:-2][::-1]
    assert await rooms.page_all(ALICE, ROOM, dir="f", limit=3) == history
    assert await rooms.page_all(BOB, ROOM, limit=3) == history[::-1]


async def test_backfilled_events_are_never_synced(rooms: Rooms) -> None:
    await rooms.room()
    since = await rooms.now(BOB)
    missed = rooms.log.message(ROOM, BOB, "old")
    await rooms.say(ROOM, BOB, "new")
    await rooms.ingest_raw(old_room_event(missed))
    body = await rooms.sync(BOB, since=since, timeout=0)
    assert event_id(missed) not in timeline_ids(body, "join", ROOM)
    complete = await rooms.sync(BOB, filter={"room": {"timeline": {"limit": 50}}})
    assert event_id(missed) not in timeline_ids(complete, "join", ROOM)


async def test_context_and_event_serve_backfilled_events(rooms: Rooms) -> None:
    created, backfilled, join, _ = await gap_then_backfill(rooms, "shared")
    middle = backfilled[2]
    assert (await rooms.event(ALICE, ROOM, middle))["content"]["body"] == "old 2"
    body = await rooms.context(ALICE, ROOM, middle, limit=4)
    assert [e["event_id"] for e in body["events_before"]] == backfilled[:2][::-1]
    assert [e["event_id"] for e in body["events_after"]] == backfilled[3:]
    # Its tokens lead on both ways without repeats.
    back = await rooms.page_all(ALICE, ROOM, **{"from": body["start"]})
    assert back == created[::-1]
    forwards = await rooms.page_all(ALICE, ROOM, dir="f", limit=2, **{"from": body["end"]})
    assert forwards[0] == join


async def test_history_visibility_applies_to_backfilled_events(rooms: Rooms) -> None:
    created, backfilled, join, late = await gap_then_backfill(rooms, "joined")
    # Alice joined after them: under "joined" she may not see them; Bob was joined. (The
    # room's first five events precede any setting: the default, shared, lets her.)
    assert await rooms.page_all(ALICE, ROOM) == [*created[:5], join, *late][::-1]
    assert await rooms.page_all(BOB, ROOM, dir="f") == [*created, *backfilled, join, *late]
    await rooms.error(ALICE, f"/rooms/{ROOM}/event/{backfilled[0]}", 404, "M_NOT_FOUND")
    await rooms.error(ALICE, f"/rooms/{ROOM}/context/{backfilled[0]}", 404, "M_NOT_FOUND")
    # Carol, never in the room, sees nothing of it.
    await rooms.error(CAROL, f"/rooms/{ROOM}/messages", 403, "M_FORBIDDEN", dir="b")
    assert ROOM not in rooms_of(await rooms.sync(CAROL), "join")


async def test_backfill_stored_by_versions_before_the_history_order_is_served(
    rooms: Rooms, service: Service
) -> None:
    """Migration 60 finds the backfilled events that versions before the history order
    (migration 6) stored without a place in it, and gives them the place ingest gives
    backfill; outliers (state sent with a state delta) stay out of the history."""
    created, backfilled, join, late = await gap_then_backfill(rooms, "shared")
    topic = rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": "sent along"}, "")
    carrier = rooms.log.message(ROOM, BOB, "carries state")
    body = carrier["new_room_event"]
    body["AddStateEvents"] = [pdu_of(topic)]
    body["adds_state_event_ids"] = [event_id(topic)]
    (carried,) = await rooms.ingest(carrier)
    history = [*created, *backfilled, join, *late, carried]
    assert await rooms.page_all(BOB, ROOM, limit=3) == history[::-1]
    outlier = f"/rooms/{ROOM}/event/{event_id(topic)}"
    await rooms.error(BOB, outlier, 404, "M_NOT_FOUND")

    async def as_before_the_history_order(conn: Conn) -> None:
        await conn.execute(
            "UPDATE events SET topo_anchor = NULL, topo_sub = NULL WHERE exclude_from_sync = 1"
        )
        await conn.execute("DELETE FROM schema_version WHERE version = 60")

    await service.engine.write(as_before_the_history_order)
    stream_only = [e for e in history if e not in backfilled]
    assert await rooms.page_all(BOB, ROOM, limit=3) == stream_only[::-1]
    assert await migrate(service.engine) == [60]
    assert await rooms.page_all(BOB, ROOM, limit=3) == history[::-1]
    assert await rooms.page_all(ALICE, ROOM, dir="f", limit=4) == history
    await rooms.error(BOB, outlier, 404, "M_NOT_FOUND")
    context = await rooms.context(BOB, ROOM, backfilled[0], limit=2)
    assert [e["event_id"] for e in context["events_after"]] == backfilled[1:2]
