"""Bundled aggregations (``unsigned.m.relations``) in every place events are served, and
the ``/relations`` endpoint."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, timeline_ids
from .relations_support import V1, at_ts, bundle, edit, reaction, related, relations, reply
from .rooms_support import (
    ROOM,
    Rooms,
    lobby_of_three,
    nio_messages,
    redacted_event,
    redaction,
)
from .sliding_support import sliding


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await lobby_of_three(service, http)


def by_id(events: list[dict[str, Any]], eid: str) -> dict[str, Any]:
    (found,) = [e for e in events if e["event_id"] == eid]
    return found


async def served_everywhere(rooms: Rooms, user: str, eid: str) -> list[dict[str, Any]]:
    """The event as /sync (complete), sliding sync, /messages, /context and /event serve
    it to ``user``."""
    body = await rooms.sync(user, filter={"room": {"timeline": {"limit": 50}}})
    timeline = body["rooms"]["join"][ROOM]["timeline"]["events"]
    subscription = {ROOM: {"timeline_limit": 50, "required_state": []}}
    slid = await sliding(rooms.http, rooms.tokens[user], {"room_subscriptions": subscription})
    messages = await rooms.messages(user, ROOM, limit=50)
    context = await rooms.context(user, ROOM, eid, limit=2)
    event = await rooms.event(user, ROOM, eid)
    return [
        by_id(timeline, eid),
        by_id(slid["rooms"][ROOM]["timeline"], eid),
        by_id(messages["chunk"], eid),
        context["event"],
        event,
    ]


# --- m.replace ------------------------------------------------------------------------------


async def test_latest_edit_is_bundled_in_every_response(rooms: Rooms) -> None:
    (original,) = await rooms.say(ROOM, BOB, "helo")
    (first, second) = await rooms.ingest(
        edit(rooms, ROOM, BOB, original, "hello"), edit(rooms, ROOM, BOB, original, "hello!")
    )
    for served in await served_everywhere(rooms, ALICE, original):
        replace = bundle(served)["m.replace"]
        assert replace["event_id"] == second
        assert replace["content"]["m.new_content"]["body"] == "hello!"
        # The original's content is left as it was sent.
        assert served["content"]["body"] == "helo"
    assert first != second


async def test_most_recent_edit_is_by_timestamp_then_event_id(rooms: Rooms) -> None:
    (original,) = await rooms.say(ROOM, BOB, "v0")
    edits = [edit(rooms, ROOM, BOB, original, f"v{n}") for n in (1, 2, 3)]
    late, tie_a, tie_b = edits
    at_ts(late, 9_000_000_000_000)
    at_ts(tie_a, 8_000_000_000_000)
    at_ts(tie_b, 8_000_000_000_000)
    # Ingested with the newest timestamp first: stream order must not decide.
    await rooms.ingest(late, tie_a, tie_b)
    event = await rooms.event(ALICE, ROOM, original)
    assert bundle(event)["m.replace"]["content"]["m.new_content"]["body"] == "v1"
    # Redacting it leaves the lexicographically larger of the two tied edits.
    tie_ids = sorted(e["new_room_event"]["event"]["_event_id"] for e in (tie_a, tie_b))
    late_id = late["new_room_event"]["event"]["_event_id"]
    because = redaction(rooms.log, ROOM, BOB, late_id)
    await rooms.ingest_raw(because, redacted_event(late_id, because))
    event = await rooms.event(ALICE, ROOM, original)
    assert bundle(event)["m.replace"]["event_id"] == tie_ids[-1]


async def test_invalid_edits_are_not_bundled(rooms: Rooms) -> None:
    (original,) = await rooms.say(ROOM, BOB, "text")
    (topic,) = await rooms.ingest(rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": "t"}, ""))
    await rooms.ingest(
        # Another sender.
        edit(rooms, ROOM, CAROL, original, "carol's"),
        # No m.new_content.
        related(rooms, ROOM, BOB, "m.replace", original, "* plain"),
        # Another event type.
        edit(rooms, ROOM, BOB, original, "as notice", etype="m.room.notice"),
        # Of a state event.
        edit(rooms, ROOM, BOB, topic, "new topic"),
    )
    assert "m.replace" not in bundle(await rooms.event(ALICE, ROOM, original))
    assert "m.replace" not in bundle(await rooms.event(ALICE, ROOM, topic))
    # An edit of an edit is not valid either.
    (valid,) = await rooms.ingest(edit(rooms, ROOM, BOB, original, "fixed"))
    await rooms.ingest(edit(rooms, ROOM, BOB, valid, "fixed twice"))
    assert bundle(await rooms.event(ALICE, ROOM, original))["m.replace"]["event_id"] == valid
    assert "m.replace" not in bundle(await rooms.event(ALICE, ROOM, valid))


MEGOLM = {
    "algorithm": "m.megolm.v1.aes-sha2",
    "sender_key": "k",
    "device_id": "BOBDEV",
    "session_id": "s",
    "ciphertext": "x",
}


async def test_encrypted_edit_needs_no_new_content(rooms: Rooms) -> None:
    (original,) = await rooms.ingest(rooms.log.event(ROOM, BOB, "m.room.encrypted", MEGOLM))
    (enc,) = await rooms.ingest(
        rooms.log.event(
            ROOM,
            BOB,
            "m.room.encrypted",
            {**MEGOLM, "m.relates_to": {"rel_type": "m.replace", "event_id": original}},
        )
    )
    assert bundle(await rooms.event(ALICE, ROOM, original))["m.replace"]["event_id"] == enc


async def test_redacted_original_bundles_no_edit(rooms: Rooms) -> None:
    (original,) = await rooms.say(ROOM, BOB, "oops")
    await rooms.ingest(edit(rooms, ROOM, BOB, original, "oops!"))
    (root_reply,) = await rooms.ingest(reply(rooms, ROOM, CAROL, original, "in thread"))
    because = redaction(rooms.log, ROOM, BOB, original)
    await rooms.ingest_raw(because, redacted_event(original, because))
    for served in await served_everywhere(rooms, ALICE, original):
        assert "m.replace" not in bundle(served)
        # Other aggregations stay.
        assert bundle(served)["m.thread"]["latest_event"]["event_id"] == root_reply


async def test_redacted_latest_edit_falls_back_to_the_previous_one(rooms: Rooms) -> None:
    (original,) = await rooms.say(ROOM, BOB, "a")
    first, second = await rooms.ingest(
        edit(rooms, ROOM, BOB, original, "b"), edit(rooms, ROOM, BOB, original, "c")
    )
    because = redaction(rooms.log, ROOM, BOB, second)
    await rooms.ingest_raw(because, redacted_event(second, because))
    assert bundle(await rooms.event(ALICE, ROOM, original))["m.replace"]["event_id"] == first
    because = redaction(rooms.log, ROOM, BOB, first)
    await rooms.ingest_raw(because, redacted_event(first, because))
    assert bundle(await rooms.event(ALICE, ROOM, original)) == {}


# --- m.thread and m.reference ---------------------------------------------------------------


async def test_thread_summary(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    one, two = await rooms.ingest(
        reply(rooms, ROOM, BOB, root, "one"), reply(rooms, ROOM, CAROL, root, "two")
    )
    # The latest reply carries its own aggregations (here, its edit).
    (two_edit,) = await rooms.ingest(edit(rooms, ROOM, CAROL, two, "two, edited"))
    for served in await served_everywhere(rooms, ALICE, root):
        thread = bundle(served)["m.thread"]
        assert thread["count"] == 2
        assert thread["current_user_participated"] is False
        assert thread["latest_event"]["event_id"] == two
        assert thread["latest_event"]["content"]["body"] == "two"
        assert bundle(thread["latest_event"])["m.replace"]["event_id"] == two_edit
    for user in (BOB, CAROL):
        event = await rooms.event(user, ROOM, root)
        assert bundle(event)["m.thread"]["current_user_participated"] is True
    assert one


async def test_references_are_bundled_oldest_first(rooms: Rooms) -> None:
    (parent,) = await rooms.say(ROOM, BOB, "poll")
    refs = await rooms.ingest(
        related(rooms, ROOM, ALICE, "m.reference", parent, "vote 1"),
        related(rooms, ROOM, CAROL, "m.reference", parent, "vote 2"),
    )
    # Reactions are indexed (see /relations) but not bundled.
    await rooms.ingest(reaction(rooms, ROOM, CAROL, parent, "👍"))
    for served in await served_everywhere(rooms, BOB, parent):
        assert bundle(served) == {"m.reference": {"chunk": [{"event_id": e} for e in refs]}}


async def test_redacted_relations_leave_the_aggregations(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    one, two, ref = await rooms.ingest(
        reply(rooms, ROOM, BOB, root, "one"),
        reply(rooms, ROOM, CAROL, root, "two"),
        related(rooms, ROOM, ALICE, "m.reference", root, "ref"),
    )
    for target in (two, ref):
        because = redaction(rooms.log, ROOM, BOB, target)
        await rooms.ingest_raw(because, redacted_event(target, because))
    served = bundle(await rooms.event(ALICE, ROOM, root))
    assert served == {
        "m.thread": {
            "latest_event": served["m.thread"]["latest_event"],
            "count": 1,
            "current_user_participated": False,
        }
    }
    assert served["m.thread"]["latest_event"]["event_id"] == one
    # The redacted reply is no longer listed as a relation either.
    listed = await relations(rooms, ALICE, ROOM, root)
    assert [e["event_id"] for e in listed["chunk"]] == [one]


async def test_ignored_users_do_not_count(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    mine, theirs, ref = await rooms.ingest(
        reply(rooms, ROOM, BOB, root, "bob"),
        reply(rooms, ROOM, CAROL, root, "carol"),
        related(rooms, ROOM, CAROL, "m.reference", root, "ref"),
    )
    await rooms.ignore(ALICE, CAROL)
    for served in await served_everywhere(rooms, ALICE, root):
        assert set(bundle(served)) == {"m.thread"}
        assert bundle(served)["m.thread"]["count"] == 1
        assert bundle(served)["m.thread"]["latest_event"]["event_id"] == mine
    listed = await relations(rooms, ALICE, ROOM, root)
    assert [e["event_id"] for e in listed["chunk"]] == [mine]
    # Bob ignores nobody: he sees both.
    assert bundle(await rooms.event(BOB, ROOM, root))["m.thread"]["count"] == 2
    assert theirs and ref


async def test_relations_after_a_user_left_are_not_theirs_to_see(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    (early,) = await rooms.ingest(reply(rooms, ROOM, BOB, root, "early"))
    (edit_id,) = await rooms.ingest(edit(rooms, ROOM, BOB, root, "root v2"))
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    await rooms.ingest(reply(rooms, ROOM, CAROL, root, "late"))
    await rooms.ingest(edit(rooms, ROOM, BOB, root, "root v3"))
    served = bundle(await rooms.event(ALICE, ROOM, root))
    assert served["m.thread"]["count"] == 1
    assert served["m.thread"]["latest_event"]["event_id"] == early
    assert served["m.replace"]["event_id"] == edit_id
    listed = await relations(rooms, ALICE, ROOM, root)
    assert [e["event_id"] for e in listed["chunk"]] == [edit_id, early]
    # Carol, still joined, sees everything.
    assert bundle(await rooms.event(CAROL, ROOM, root))["m.thread"]["count"] == 2


async def test_incremental_sync_bundles_new_timeline_events(rooms: Rooms) -> None:
    since = await rooms.now(ALICE)
    (root,) = await rooms.say(ROOM, BOB, "root")
    (first,) = await rooms.ingest(reply(rooms, ROOM, CAROL, root, "r"))
    body = await rooms.sync(ALICE, since=since)
    assert timeline_ids(body, "join", ROOM) == [root, first]
    served = body["rooms"]["join"][ROOM]["timeline"]["events"][0]
    assert bundle(served)["m.thread"]["latest_event"]["event_id"] == first


# --- /relations -----------------------------------------------------------------------------


async def test_relations_pages_newest_first(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    replies = await rooms.ingest(*(reply(rooms, ROOM, CAROL, root, f"r{n}") for n in range(5)))
    reactions = await rooms.ingest(
        reaction(rooms, ROOM, ALICE, root, "a"), reaction(rooms, ROOM, BOB, root, "b")
    )
    everything = list(reversed(replies + reactions))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        page = await relations(rooms, ALICE, ROOM, root, **params)
        assert len(page["chunk"]) <= 3
        nio_messages({"chunk": page["chunk"], "start": "x"}, ROOM)
        seen += [e["event_id"] for e in page["chunk"]]
        assert "recursion_depth" not in page
        if "next_batch" not in page:
            break
        params["from"] = page["next_batch"]
        assert page["prev_batch" if "prev_batch" in page else "next_batch"]
    assert seen == everything
    # Forwards, oldest first.
    forwards = await relations(rooms, ALICE, ROOM, root, dir="f", limit=50)
    assert [e["event_id"] for e in forwards["chunk"]] == replies + reactions
    # By relation type, and by relation type and event type.
    threaded = await relations(rooms, ALICE, ROOM, root, "m.thread")
    assert [e["event_id"] for e in threaded["chunk"]] == list(reversed(replies))
    reacted = await relations(rooms, ALICE, ROOM, root, "m.annotation", "m.reaction")
    assert [e["event_id"] for e in reacted["chunk"]] == list(reversed(reactions))
    none = await relations(rooms, ALICE, ROOM, root, "m.annotation", "m.room.message")
    assert none["chunk"] == [] and "next_batch" not in none


async def test_relations_from_a_sync_token_and_to(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    old = await rooms.ingest(*(reply(rooms, ROOM, CAROL, root, f"o{n}") for n in range(2)))
    middle = await rooms.now(ALICE)
    new = await rooms.ingest(*(reply(rooms, ROOM, CAROL, root, f"n{n}") for n in range(2)))
    before = await relations(rooms, ALICE, ROOM, root, **{"from": middle})
    assert [e["event_id"] for e in before["chunk"]] == list(reversed(old))
    assert before["prev_batch"] == middle
    after = await relations(rooms, ALICE, ROOM, root, to=middle)
    assert [e["event_id"] for e in after["chunk"]] == list(reversed(new))


async def test_recurse_follows_relations_of_relations(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    (child,) = await rooms.ingest(reply(rooms, ROOM, CAROL, root, "child"))
    (grandchild,) = await rooms.ingest(edit(rooms, ROOM, CAROL, child, "child!"))
    (great,) = await rooms.ingest(reaction(rooms, ROOM, ALICE, grandchild, "x"))
    (too_deep,) = await rooms.ingest(reaction(rooms, ROOM, ALICE, great, "y"))
    flat = await relations(rooms, ALICE, ROOM, root)
    assert [e["event_id"] for e in flat["chunk"]] == [child]
    deep = await relations(rooms, ALICE, ROOM, root, recurse=True)
    assert deep["recursion_depth"] == 3
    assert [e["event_id"] for e in deep["chunk"]] == [great, grandchild, child]
    assert too_deep not in [e["event_id"] for e in deep["chunk"]]
    # The type filter applies at every level.
    edits = await relations(rooms, ALICE, ROOM, root, "m.replace", recurse=True)
    assert [e["event_id"] for e in edits["chunk"]] == [grandchild]
    not_recursed = await relations(rooms, ALICE, ROOM, root, recurse=False)
    assert not_recursed["recursion_depth"] == 1


async def test_relations_errors(rooms: Rooms) -> None:
    (root,) = await rooms.say(ROOM, BOB, "root")
    base = f"{V1}/rooms/{quote(ROOM)}/relations/{quote(root)}"
    headers = {"Authorization": f"Bearer {rooms.tokens[ALICE]}"}
    for params, status, errcode in [
        ({"dir": "x"}, 400, "M_INVALID_PARAM"),
        ({"limit": "-1"}, 400, "M_INVALID_PARAM"),
        ({"recurse": "maybe"}, 400, "M_INVALID_PARAM"),
        ({"from": "garbage"}, 400, "M_INVALID_PARAM"),
    ]:
        r = await rooms.http.get(base, params=params, headers=headers)
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
    r = await rooms.http.get(f"{V1}/rooms/{quote(ROOM)}/relations/%24unknown", headers=headers)
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    # Dave was never in the room: the parent is not his to see.
    dave = await rooms.device("@dave:example.org")
    r = await rooms.http.get(base, headers={"Authorization": f"Bearer {dave}"})
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    r = await rooms.http.get(base)
    assert r.status_code == 401
