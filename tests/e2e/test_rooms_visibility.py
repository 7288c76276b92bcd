"""History visibility (world_readable, shared, invited, joined), judged by the state at
each event, as seen through /sync, /messages, /context and /event."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, rooms_of, state_keys, timeline_ids
from .rooms_support import (
    ROOM,
    Rooms,
    by_key,
    context_path,
    event_path,
    make_rooms,
    messages_path,
    visibility,
)


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def chunk_ids(body: dict[str, object]) -> list[str]:
    chunk = body["chunk"]
    assert isinstance(chunk, list)
    return [e["event_id"] for e in chunk]


# --- joined -------------------------------------------------------------------------------


async def test_joined_history_before_the_join_is_not_in_the_sync_timeline(rooms: Rooms) -> None:
    created = await rooms.room(setting="joined")
    hidden = await rooms.say(ROOM, BOB, "m1", "m2")
    join = await rooms.join(ROOM, ALICE)
    later = await rooms.say(ROOM, BOB, "m3")
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 20}}})
    # The first five events were sent while history was still shared (no setting before
    # the setting itself); the name and m1, m2 were sent under "joined" before her join.
    assert timeline_ids(body, "join", ROOM) == [*created[:5], join, *later]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is False
    assert not set(hidden) & set(timeline_ids(body, "join", ROOM))


async def test_joined_member_still_learns_the_current_state_of_the_room(rooms: Rooms) -> None:
    created = await rooms.room(setting="joined")
    (carol,) = await rooms.ingest(rooms.log.member(ROOM, CAROL, "join"))
    await rooms.join(ROOM, ALICE)
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 20}}})
    room = body["rooms"]["join"][ROOM]
    # What the client knows of the room's state: state plus state events of the timeline.
    known = by_key(room["state"]["events"]) | by_key(
        [e for e in room["timeline"]["events"] if "state_key" in e]
    )
    assert known[("m.room.name", "")]["event_id"] == created[5]
    assert known[("m.room.member", CAROL)]["event_id"] == carol


async def test_joined_history_before_the_join_is_not_in_messages(rooms: Rooms) -> None:
    created = await rooms.room(setting="joined")
    await rooms.say(ROOM, BOB, "m1", "m2")
    join = await rooms.join(ROOM, ALICE)
    later = await rooms.say(ROOM, BOB, "m3")
    body = await rooms.messages(ALICE, ROOM, limit=50)
    assert chunk_ids(body) == list(reversed([*created[:5], join, *later]))
    assert "end" not in body
    forwards = await rooms.page_all(ALICE, ROOM, dir="f", limit=3)
    assert forwards == [*created[:5], join, *later]


async def test_joined_history_before_the_join_is_not_found_by_event_or_context(
    rooms: Rooms,
) -> None:
    created = await rooms.room(setting="joined")
    hidden = await rooms.say(ROOM, BOB, "m1", "m2")
    join = await rooms.join(ROOM, ALICE)
    later = await rooms.say(ROOM, BOB, "m3")
    for eid in (*hidden, created[5]):
        await rooms.error(ALICE, event_path(ROOM, eid), 404, "M_NOT_FOUND")
        await rooms.error(ALICE, context_path(ROOM, eid), 404, "M_NOT_FOUND")
    assert (await rooms.event(ALICE, ROOM, later[0]))["event_id"] == later[0]
    context = await rooms.context(ALICE, ROOM, join, limit=10)
    assert [e["event_id"] for e in context["events_before"]] == list(reversed(created[:5]))
    assert [e["event_id"] for e in context["events_after"]] == later


# --- invited ------------------------------------------------------------------------------


async def test_invited_history_is_visible_from_the_invite_on(rooms: Rooms) -> None:
    created = await rooms.room(setting="invited")
    await rooms.say(ROOM, BOB, "before the invite")
    (invite,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "invite", sender=BOB))
    while_invited = await rooms.say(ROOM, BOB, "while invited")
    join = await rooms.join(ROOM, ALICE)
    later = await rooms.say(ROOM, BOB, "after the join")
    expected = [*created[:5], invite, *while_invited, join, *later]
    assert await rooms.page_all(ALICE, ROOM, dir="f", limit=4) == expected
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 20}}})
    assert timeline_ids(body, "join", ROOM) == expected
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is False


# --- shared -------------------------------------------------------------------------------


async def test_shared_history_before_the_join_is_visible(rooms: Rooms) -> None:
    created = await rooms.room(setting="shared")
    before = await rooms.say(ROOM, BOB, "m1", "m2")
    join = await rooms.join(ROOM, ALICE)
    expected = [*created, *before, join]
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 20}}})
    assert timeline_ids(body, "join", ROOM) == expected
    assert await rooms.page_all(ALICE, ROOM, limit=3) == list(reversed(expected))
    assert (await rooms.event(ALICE, ROOM, before[0]))["content"]["body"] == "m1"


async def test_shared_history_is_not_visible_to_someone_only_invited(rooms: Rooms) -> None:
    await rooms.room(setting="shared")
    (before,) = await rooms.say(ROOM, BOB, "m1")
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "invite", sender=BOB))
    await rooms.error(ALICE, event_path(ROOM, before), 404, "M_NOT_FOUND")
    # Shared history opens to those who join; an invite alone gives no access to the room.
    await rooms.error(ALICE, messages_path(ROOM), 403, "M_FORBIDDEN", dir="b")


# --- world_readable -----------------------------------------------------------------------


async def test_world_readable_room_can_be_read_without_joining(rooms: Rooms) -> None:
    await rooms.room(setting="joined")
    (hidden,) = await rooms.say(ROOM, BOB, "members only")
    (opened,) = await rooms.ingest(visibility(rooms.log, ROOM, BOB, "world_readable"))
    readable = await rooms.say(ROOM, BOB, "for everyone", "again")
    body = await rooms.messages(ALICE, ROOM, limit=50)
    assert chunk_ids(body) == list(reversed([opened, *readable]))
    assert (await rooms.event(ALICE, ROOM, readable[0]))["content"]["body"] == "for everyone"
    await rooms.error(ALICE, event_path(ROOM, hidden), 404, "M_NOT_FOUND")
    context = await rooms.context(ALICE, ROOM, readable[0], limit=2)
    assert [e["event_id"] for e in context["events_before"]] == [opened]
    assert [e["event_id"] for e in context["events_after"]] == [readable[1]]


async def test_visibility_event_is_visible_by_the_setting_before_or_after_it(
    rooms: Rooms,
) -> None:
    await rooms.room(setting="joined")
    (hidden,) = await rooms.say(ROOM, BOB, "members only")
    # joined → world_readable: the setting after it lets a non-member see it.
    (opened,) = await rooms.ingest(visibility(rooms.log, ROOM, BOB, "world_readable"))
    (public,) = await rooms.say(ROOM, BOB, "public")
    # world_readable → joined: the setting before it does.
    (closed,) = await rooms.ingest(visibility(rooms.log, ROOM, BOB, "joined"))
    (private,) = await rooms.say(ROOM, BOB, "private again")
    await rooms.join(ROOM, CAROL)
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "leave"))
    # Carol was joined once: she reads what she may see, judged event by event.
    for eid in (opened, public, closed):
        assert (await rooms.event(CAROL, ROOM, eid))["event_id"] == eid
    for eid in (hidden, private):
        await rooms.error(CAROL, event_path(ROOM, eid), 404, "M_NOT_FOUND")
    # The room is no longer world readable: a user never joined may not read it at all.
    await rooms.error(ALICE, messages_path(ROOM), 403, "M_FORBIDDEN", dir="b")
    await rooms.error(ALICE, event_path(ROOM, public), 404, "M_NOT_FOUND")


async def test_never_joined_user_cannot_read_a_shared_room(rooms: Rooms) -> None:
    created = await rooms.room(setting="shared")
    await rooms.error(ALICE, messages_path(ROOM), 403, "M_FORBIDDEN", dir="b")
    await rooms.error(ALICE, event_path(ROOM, created[0]), 404, "M_NOT_FOUND")
    await rooms.error(ALICE, context_path(ROOM, created[0]), 403, "M_FORBIDDEN")


# --- the user's own membership events -----------------------------------------------------


async def test_own_membership_events_are_visible_by_the_membership_before_or_after(
    rooms: Rooms,
) -> None:
    created = await rooms.room(setting="joined")
    (carol,) = await rooms.ingest(rooms.log.member(ROOM, CAROL, "join"))
    # Alice's own join: she was not joined before it, but is after it.
    join = await rooms.join(ROOM, ALICE)
    # Alice's own leave: she is not joined after it, but was before it.
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    await rooms.say(ROOM, BOB, "after alice left")
    assert (await rooms.event(ALICE, ROOM, join))["content"]["membership"] == "join"
    assert (await rooms.event(ALICE, ROOM, leave))["content"]["membership"] == "leave"
    await rooms.error(ALICE, event_path(ROOM, carol), 404, "M_NOT_FOUND")
    assert await rooms.page_all(ALICE, ROOM, limit=3) == list(reversed([*created[:5], join, leave]))


# --- after a leave ------------------------------------------------------------------------


async def test_nothing_after_a_leave_is_visible_in_messages(rooms: Rooms) -> None:
    created = await rooms.room(setting="shared")
    join = await rooms.join(ROOM, ALICE)
    (m1,) = await rooms.say(ROOM, BOB, "m1")
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    after = await rooms.say(ROOM, BOB, "m2", "m3")
    # Paging forward from before the leave stops at the leave.
    assert await rooms.page_all(ALICE, ROOM, dir="f", limit=2) == [*created, join, m1, leave]
    body = await rooms.messages(ALICE, ROOM, dir="f", limit=50)
    assert chunk_ids(body)[-1] == leave
    assert "end" not in body
    # Backwards from now starts at the leave.
    body = await rooms.messages(ALICE, ROOM, limit=2)
    assert chunk_ids(body) == [leave, m1]
    for eid in after:
        await rooms.error(ALICE, event_path(ROOM, eid), 404, "M_NOT_FOUND")
        await rooms.error(ALICE, context_path(ROOM, eid), 404, "M_NOT_FOUND")
    context = await rooms.context(ALICE, ROOM, m1, limit=10)
    assert [e["event_id"] for e in context["events_after"]] == [leave]


async def test_archived_room_in_sync_ends_at_the_leave(rooms: Rooms) -> None:
    await rooms.room(setting="shared")
    await rooms.join(ROOM, ALICE)
    (m1,) = await rooms.say(ROOM, BOB, "m1")
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    after = await rooms.ingest(
        rooms.log.message(ROOM, BOB, "m2"),
        rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": "after alice"}, ""),
    )
    body = await rooms.sync(ALICE, filter={"room": {"include_leave": True}})
    assert rooms_of(body, "leave") == {ROOM}
    timeline = timeline_ids(body, "leave", ROOM)
    assert timeline[-2:] == [m1, leave]
    assert not set(after) & set(timeline)
    assert ("m.room.topic", "") not in state_keys(body, "leave", ROOM)
