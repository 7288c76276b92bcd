"""Forked room histories: an event whose state (``state_before_adds_event_ids`` /
``state_before_removes_event_ids``) differs from the room's linear state is served and
judged by its own state: ``prev_content``/``replaces_state``, history visibility, and the
state ``/context`` and lazy-loaded ``/messages`` send with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, event_id, timeline_ids
from .rooms_support import ROOM, Message, Rooms, by_key, make_rooms

MEMBER = "m.room.member"


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def forked(message: Message, adds: list[str], removes: list[str]) -> Message:
    """``message`` with the state at its event given as a delta from the state after it."""
    body: dict[str, Any] = message["new_room_event"]
    body["state_before_adds_event_ids"] = adds
    body["state_before_removes_event_ids"] = removes
    return message


def topic(rooms: Rooms, text: str) -> Message:
    return rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": text}, "")


async def test_prev_content_is_that_of_the_state_at_the_event(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    one, _two = await rooms.ingest(topic(rooms, "one"), topic(rooms, "two"))
    # On a branch from before "two", Bob set "fork" (which wins): at the event the topic
    # was "one", and the event is not part of its own state.
    message = topic(rooms, "fork")
    (fork,) = await rooms.ingest(forked(message, [one], [event_id(message)]))
    event = await rooms.event(ALICE, ROOM, fork)
    assert event["unsigned"]["replaces_state"] == one
    assert event["unsigned"]["prev_content"] == {"topic": "one"}
    body = await rooms.sync(ALICE)
    served = body["rooms"]["join"][ROOM]["timeline"]["events"][-1]
    assert served["event_id"] == fork
    assert served["unsigned"]["prev_content"] == {"topic": "one"}


async def test_history_visibility_is_judged_by_the_state_at_the_event(rooms: Rooms) -> None:
    created = await rooms.room(setting="joined")
    join = await rooms.join(ROOM, ALICE)
    before = await rooms.say(ROOM, BOB, "seen")
    # A message from a branch that forked before Alice joined: she was not in the room at
    # it, so under "joined" she may not see it, though it arrived after her join.
    # (In one batch with a plain message: a batch's plain events are stored in bulk.)
    hidden, *after = await rooms.ingest(
        forked(rooms.log.message(ROOM, BOB, "branch"), [], [join]),
        rooms.log.message(ROOM, BOB, "seen too"),
    )
    # (The room's first five events precede any setting: the default, shared, holds.)
    seen = [*created[:5], join, *before, *after]
    assert await rooms.page_all(ALICE, ROOM, dir="f") == seen
    await rooms.error(ALICE, f"/rooms/{ROOM}/event/{hidden}", 404, "M_NOT_FOUND")
    assert hidden not in timeline_ids(await rooms.sync(ALICE), "join", ROOM)
    assert hidden in await rooms.page_all(BOB, ROOM)


async def test_unknown_state_before_ids_are_rejected(rooms: Rooms, service: Service) -> None:
    await rooms.room()
    message = forked(rooms.log.message(ROOM, BOB, "bad"), ["$nowhere"], [])
    applied = await service.ingest([message])
    assert (applied.accepted, applied.rejected) == (0, 1)
    # Ingest goes on.
    await rooms.say(ROOM, BOB, "fine")


async def test_context_around_a_forked_event(rooms: Rooms) -> None:
    await rooms.room(setting="world_readable")
    (message,) = await rooms.say(ROOM, BOB, "hello")
    hv_then = rooms.log.current_state(ROOM)[("m.room.history_visibility", "")]
    (setting,) = await rooms.ingest(
        rooms.log.event(
            ROOM, BOB, "m.room.history_visibility", {"history_visibility": "shared"}, ""
        )
    )
    # Forked before the change: at it the room was world readable.
    (fork,) = await rooms.ingest(
        forked(rooms.log.message(ROOM, BOB, "branch"), [hv_then], [setting])
    )
    body = await rooms.context(BOB, ROOM, message, limit=4)
    assert [e["event_id"] for e in body["events_after"]] == [setting, fork]


async def test_context_state_and_lazy_members_are_those_at_a_forked_event(
    rooms: Rooms,
) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    bob_then = rooms.log.current_state(ROOM)[("m.room.member", BOB)]
    one, two = await rooms.ingest(topic(rooms, "one"), topic(rooms, "two"))
    renamed = await rooms.join(ROOM, BOB, displayname="Robert")
    # From a branch that forked before "two" and before Bob's rename.
    message = rooms.log.message(ROOM, BOB, "from the branch")
    (fork,) = await rooms.ingest(forked(message, [one, bob_then], [two, renamed]))

    # /context's state is the state at the last event returned: the fork's own.
    body = await rooms.context(ALICE, ROOM, fork, limit=0)
    state = by_key(body["state"])
    assert state[("m.room.topic", "")]["event_id"] == one
    assert state[("m.room.topic", "")]["content"] == {"topic": "one"}
    assert state[("m.room.member", BOB)]["event_id"] == bob_then
    assert "displayname" not in state[("m.room.member", BOB)]["content"]
    assert state[("m.room.member", ALICE)]["content"]["membership"] == "join"
    # The same with the fork as the last of a window that starts before it.
    body = await rooms.context(ALICE, ROOM, renamed, limit=2)
    assert [e["event_id"] for e in body["events_after"]] == [fork]
    assert by_key(body["state"])[("m.room.topic", "")]["event_id"] == one

    # Lazy-loaded members: Bob as he was on the branch, in /context and /messages.
    lazy = {"lazy_load_members": True}
    body = await rooms.context(ALICE, ROOM, fork, limit=0, filter=lazy)
    assert [(e["state_key"], e["event_id"]) for e in body["state"] if e["type"] == MEMBER] == [
        (BOB, bob_then)
    ]
    page = await rooms.messages(ALICE, ROOM, limit=1, filter=lazy)
    assert [e["event_id"] for e in page["chunk"]] == [fork]
    assert [e["event_id"] for e in page["state"]] == [bob_then]

    # Back on the main line, the linear state holds again.
    (after,) = await rooms.say(ROOM, BOB, "main line")
    body = await rooms.context(ALICE, ROOM, after, limit=0)
    state = by_key(body["state"])
    assert state[("m.room.topic", "")]["event_id"] == two
    assert state[("m.room.member", BOB)]["event_id"] == renamed
    page = await rooms.messages(ALICE, ROOM, limit=2, filter=lazy)
    assert [e["event_id"] for e in page["chunk"]] == [after, fork]
    assert [e["event_id"] for e in page["state"]] == [renamed]


async def _page(rooms: Rooms, **params: Any) -> dict[str, Any]:
    """One page of lazy-loaded ``/messages`` for Alice."""
    return await rooms.messages(ALICE, ROOM, filter={"lazy_load_members": True}, **params)


async def _pages(rooms: Rooms, **params: Any) -> list[dict[str, Any]]:
    """Every page of lazy-loaded ``/messages`` for Alice, following ``end``."""
    out = []
    while True:
        page = await _page(rooms, **params)
        out.append(page)
        if "end" not in page:
            return out
        params["from"] = page["end"]


def _members(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["state_key"]: e["event_id"] for e in events if e["type"] == MEMBER}


async def test_lazy_members_of_a_page_are_those_at_its_newest_event(rooms: Rooms) -> None:
    """One point per page, whichever the direction: the newest event of the chunk. A page
    whose newest event is forked gets that event's own state; a page whose newest event is
    on the main line gets the linear state there, even when an older event of the page is
    forked and its sender's member event differs at it."""
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    bob_then = rooms.log.current_state(ROOM)[(MEMBER, BOB)]
    renamed = await rooms.join(ROOM, BOB, displayname="Robert")
    # From a branch that forked before Bob's rename, then the main line again.
    message = rooms.log.message(ROOM, BOB, "from the branch")
    (fork,) = await rooms.ingest(forked(message, [bob_then], [renamed]))
    (after,) = await rooms.say(ROOM, BOB, "main line")

    def ids(page: dict[str, Any]) -> list[str]:
        return [e["event_id"] for e in page["chunk"]]

    newest = await rooms.messages(ALICE, ROOM, limit=1)
    assert ids(newest) == [after]
    before_after = newest["end"]
    # [fork, renamed] backwards and [renamed, fork] forwards: the fork is the newest event,
    # and Bob is as he was on the branch.
    back = await _page(rooms, limit=2, **{"from": before_after})
    assert ids(back) == [fork, renamed]
    assert _members(back["state"])[BOB] == bob_then
    first = await rooms.messages(ALICE, ROOM, limit=1, **{"from": before_after})
    second = await rooms.messages(ALICE, ROOM, limit=1, **{"from": first["end"]})
    assert ids(second) == [renamed]
    before_renamed = second["end"]
    ahead = await _pages(rooms, dir="f", limit=2, **{"from": before_renamed})
    assert [ids(p) for p in ahead] == [[renamed, fork], [after]]
    assert _members(ahead[0]["state"])[BOB] == bob_then
    # [fork, after] forwards and [after, fork] backwards: the newest event is on the main
    # line, so Bob's member event is the rename, as on a linear page.
    for page in (
        await _page(rooms, dir="f", limit=2, **{"from": first["end"]}),
        await _page(rooms, limit=2),
    ):
        assert sorted(ids(page)) == sorted([fork, after])
        assert _members(page["state"]) == {BOB: renamed}

    # Every page, both directions, several sizes: the senders' member events are those
    # in the state at the page's newest event, as /context gives it.
    checked = 0
    for params in ({"dir": "b"}, {"dir": "f"}):
        for limit in (1, 2, 3):
            for page in await _pages(rooms, limit=limit, **params):
                if not page["chunk"]:
                    continue
                top = page["chunk"][0 if params["dir"] == "b" else -1]["event_id"]
                at = _members((await rooms.context(ALICE, ROOM, top, limit=0))["state"])
                senders = {e["sender"] for e in page["chunk"]}
                # (At the create event its sender has no member event yet.)
                assert _members(page["state"]) == {u: at[u] for u in senders if u in at}
                checked += 1
    assert checked > 10


async def test_a_forked_state_event_is_part_of_the_state_after_it(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    one, two = await rooms.ingest(topic(rooms, "one"), topic(rooms, "two"))
    # A topic set on a branch from before "two"; "two" wins the resolution.
    message = topic(rooms, "branch")
    message["new_room_event"]["adds_state_event_ids"] = []
    message["new_room_event"]["removes_state_event_ids"] = []
    (fork,) = await rooms.ingest(forked(message, [one], [two]))
    body = await rooms.context(ALICE, ROOM, fork, limit=0)
    assert by_key(body["state"])[("m.room.topic", "")]["event_id"] == fork
    event = await rooms.event(ALICE, ROOM, fork)
    assert event["unsigned"]["replaces_state"] == one
