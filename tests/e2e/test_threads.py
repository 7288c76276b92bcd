"""``GET /threads`` and thread-aware unread counts."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL
from .relations_support import V1, bundle, reply, threads
from .rooms_support import ROOM, Rooms, lobby_of_three, nio_messages, redacted_event, redaction
from .support import call


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await lobby_of_three(service, http)


def roots(body: dict[str, Any]) -> list[str]:
    return [e["event_id"] for e in body["chunk"]]


async def test_threads_by_latest_activity(rooms: Rooms) -> None:
    a, b, c = await rooms.say(ROOM, BOB, "a", "b", "c")
    await rooms.say(ROOM, BOB, "not a thread")
    await rooms.ingest(reply(rooms, ROOM, BOB, a, "a1"), reply(rooms, ROOM, CAROL, b, "b1"))
    (c1,) = await rooms.ingest(reply(rooms, ROOM, BOB, c, "c1"))
    await rooms.ingest(reply(rooms, ROOM, BOB, a, "a2"))
    body = await threads(rooms, ALICE, ROOM)
    assert roots(body) == [a, c, b]
    assert "next_batch" not in body
    nio_messages({"chunk": body["chunk"], "start": "x"}, ROOM)
    # Every root comes with its thread summary.
    summary = bundle(body["chunk"][1])["m.thread"]
    assert summary["latest_event"]["event_id"] == c1
    assert summary["count"] == 1


async def test_threads_pagination(rooms: Rooms) -> None:
    made = await rooms.say(ROOM, BOB, *(f"t{n}" for n in range(5)))
    for root in made:
        await rooms.ingest(reply(rooms, ROOM, CAROL, root, "r"))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(10):
        body = await threads(rooms, ALICE, ROOM, **params)
        assert len(body["chunk"]) <= 2
        seen += roots(body)
        if "next_batch" not in body:
            break
        params["from"] = body["next_batch"]
    assert seen == list(reversed(made))


async def test_threads_include_participated(rooms: Rooms) -> None:
    started, replied, other = await rooms.say(ROOM, BOB, "x", "y", "z")
    (by_carol,) = await rooms.ingest(rooms.log.message(ROOM, CAROL, "carol's"))
    await rooms.ingest(
        reply(rooms, ROOM, BOB, started, "1"),
        reply(rooms, ROOM, ALICE, replied, "2"),
        reply(rooms, ROOM, BOB, other, "3"),
        reply(rooms, ROOM, BOB, by_carol, "4"),
    )
    assert roots(await threads(rooms, BOB, ROOM, include="participated")) == [
        by_carol,
        other,
        replied,
        started,
    ]
    assert roots(await threads(rooms, ALICE, ROOM, include="participated")) == [replied]
    assert roots(await threads(rooms, CAROL, ROOM, include="participated")) == [by_carol]
    assert len(roots(await threads(rooms, CAROL, ROOM, include="all"))) == 4


async def test_threads_hide_what_the_user_may_not_see(rooms: Rooms) -> None:
    (early,) = await rooms.say(ROOM, BOB, "early")
    await rooms.ingest(reply(rooms, ROOM, BOB, early, "r"))
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    (late,) = await rooms.say(ROOM, BOB, "late")
    await rooms.ingest(reply(rooms, ROOM, BOB, late, "r"))
    # A thread only of replies Alice cannot see (its root is old) is not listed.
    (quiet,) = await rooms.say(ROOM, CAROL, "quiet")
    assert roots(await threads(rooms, ALICE, ROOM)) == [early]
    assert roots(await threads(rooms, CAROL, ROOM)) == [late, early]
    assert quiet
    # Someone never in the room gets 403.
    dave = await rooms.device("@dave:example.org")
    r = await rooms.http.get(
        f"{V1}/rooms/{quote(ROOM)}/threads", headers={"Authorization": f"Bearer {dave}"}
    )
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")


async def test_threads_of_ignored_users(rooms: Rooms) -> None:
    (theirs,) = await rooms.say(ROOM, CAROL, "carol's root")
    (only_carol,) = await rooms.say(ROOM, BOB, "bob's root")
    await rooms.ingest(
        reply(rooms, ROOM, BOB, theirs, "bob replies"),
        reply(rooms, ROOM, CAROL, only_carol, "carol replies"),
    )
    await rooms.ignore(ALICE, CAROL)
    body = await threads(rooms, ALICE, ROOM)
    # Carol's root is served redacted; a thread of only Carol's replies is not listed.
    assert roots(body) == [theirs]
    assert body["chunk"][0]["content"] == {}
    assert bundle(body["chunk"][0])["m.thread"]["count"] == 1


async def test_threads_errors(rooms: Rooms) -> None:
    headers = {"Authorization": f"Bearer {rooms.tokens[ALICE]}"}
    path = f"{V1}/rooms/{quote(ROOM)}/threads"
    for params in ({"include": "mine"}, {"limit": "0"}, {"limit": "x"}, {"from": "nope"}):
        r = await rooms.http.get(path, params=params, headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), r.text


# --- thread-aware unread counts -------------------------------------------------------------


def counts(user: str, n: int, thread: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user,
        "room_id": ROOM,
        "unread_notification_count": n,
        "unread_highlight_count": 0,
    }
    if thread is not None:
        body["thread_id"] = thread
    return {"type": "notification_data", "notification_data": body}


THREADED = {"room": {"timeline": {"unread_thread_notifications": True}}}


async def unread(rooms: Rooms, user: str) -> tuple[int, dict[str, int]]:
    room = (await rooms.sync(user, filter=THREADED))["rooms"]["join"][ROOM]
    per_thread = {
        k: v["notification_count"] for k, v in room.get("unread_thread_notifications", {}).items()
    }
    return room["unread_notifications"]["notification_count"], per_thread


async def receipt(rooms: Rooms, user: str, eid: str, thread: str) -> None:
    await call(
        rooms.http,
        "POST",
        f"/rooms/{quote(ROOM)}/receipt/m.read/{quote(eid)}",
        rooms.tokens[user],
        {"thread_id": thread},
    )


async def test_receipt_at_a_threads_newest_reply_clears_that_thread(rooms: Rooms) -> None:
    root, other = await rooms.say(ROOM, BOB, "root", "other root")
    one, two = await rooms.ingest(
        reply(rooms, ROOM, BOB, root, "1"), reply(rooms, ROOM, BOB, root, "2")
    )
    (elsewhere,) = await rooms.ingest(reply(rooms, ROOM, BOB, other, "x"))
    # The room's newest event is in another thread, and main has news after the thread.
    (main_last,) = await rooms.say(ROOM, BOB, "main")
    await rooms.ingest_raw(counts(ALICE, 1), counts(ALICE, 2, root), counts(ALICE, 3, other))
    assert await unread(rooms, ALICE) == (1, {root: 2, other: 3})
    # Short of the thread's newest reply: nothing cleared.
    await receipt(rooms, ALICE, one, root)
    assert await unread(rooms, ALICE) == (1, {root: 2, other: 3})
    # At it: that thread only, although newer events exist in the room.
    await receipt(rooms, ALICE, two, root)
    assert await unread(rooms, ALICE) == (1, {root: 0, other: 3})
    # Main is cleared by a receipt at the newest event of no thread.
    await receipt(rooms, ALICE, root, "main")
    assert await unread(rooms, ALICE) == (1, {root: 0, other: 3})
    await receipt(rooms, ALICE, main_last, "main")
    assert await unread(rooms, ALICE) == (0, {root: 0, other: 3})
    await receipt(rooms, ALICE, elsewhere, other)
    assert await unread(rooms, ALICE) == (0, {root: 0, other: 0})


async def test_redacted_reply_no_longer_counts_as_the_threads_newest(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    one, two = await rooms.ingest(
        reply(rooms, ROOM, BOB, root, "1"), reply(rooms, ROOM, BOB, root, "2")
    )
    because = redaction(rooms.log, ROOM, BOB, two)
    await rooms.ingest_raw(because, redacted_event(two, because))
    await rooms.ingest_raw(counts(ALICE, 4, root))
    await receipt(rooms, ALICE, one, root)
    assert (await unread(rooms, ALICE))[1] == {root: 0}


async def pages(rooms: Rooms, user_id: str, **params: Any) -> list[list[str]]:
    """The roots of every ``/threads`` page, following ``next_batch``."""
    out: list[list[str]] = []
    for _ in range(20):
        body = await threads(rooms, user_id, ROOM, **params)
        out.append(roots(body))
        if "next_batch" not in body:
            return out
        params["from"] = body["next_batch"]
    pytest.fail("/threads never stopped giving next_batch")


async def test_threads_sit_at_the_newest_reply_not_from_an_ignored_user(rooms: Rooms) -> None:
    a, b = await rooms.say(ROOM, BOB, "a", "b")
    (a1,) = await rooms.ingest(reply(rooms, ROOM, BOB, a, "a1"))
    (b1,) = await rooms.ingest(reply(rooms, ROOM, BOB, b, "b1"))
    await rooms.ingest(reply(rooms, ROOM, CAROL, a, "a2 from carol"))
    await rooms.ignore(ALICE, CAROL)
    # For Bob, a's newest reply is Carol's; Alice ignores Carol, so a sits at a1, before b1.
    assert roots(await threads(rooms, BOB, ROOM)) == [a, b]
    body = await threads(rooms, ALICE, ROOM)
    assert roots(body) == [b, a]
    assert [bundle(e)["m.thread"]["latest_event"]["event_id"] for e in body["chunk"]] == [b1, a1]
    # Pages follow the same order, each thread once.
    assert await pages(rooms, ALICE, limit=1) == [[b], [a]]
    assert await pages(rooms, BOB, limit=1) == [[a], [b]]


async def test_threads_sit_at_the_newest_reply_the_user_may_see(rooms: Rooms) -> None:
    a, b, c = await rooms.say(ROOM, BOB, "a", "b", "c")
    await rooms.ingest(
        reply(rooms, ROOM, BOB, a, "a1"),
        reply(rooms, ROOM, BOB, b, "b1"),
        reply(rooms, ROOM, BOB, c, "c1"),
    )
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    # After Alice left: newer replies to a and b, which she may not see.
    await rooms.ingest(reply(rooms, ROOM, BOB, a, "a2"), reply(rooms, ROOM, BOB, b, "b2"))
    assert roots(await threads(rooms, BOB, ROOM)) == [b, a, c]
    assert roots(await threads(rooms, ALICE, ROOM)) == [c, b, a]
    assert await pages(rooms, ALICE, limit=2) == [[c, b], [a]]
    assert await pages(rooms, BOB, limit=2) == [[b, a], [c]]


async def test_threads_pagination_survives_new_replies(rooms: Rooms) -> None:
    a, b, c = await rooms.say(ROOM, BOB, "a", "b", "c")
    for root in (a, b, c):
        await rooms.ingest(reply(rooms, ROOM, CAROL, root, "r"))
    first = await threads(rooms, ALICE, ROOM, limit=1)
    assert roots(first) == [c]
    # A reply to the thread already served moves it to the top, not onto a later page.
    await rooms.ingest(reply(rooms, ROOM, CAROL, c, "again"))
    rest = await pages(rooms, ALICE, limit=1, **{"from": first["next_batch"]})
    assert rest == [[b], [a]]
    assert roots(await threads(rooms, ALICE, ROOM)) == [c, b, a]
