"""Per-event ``unsigned`` fields: ``prev_content`` and ``replaces_state``, ``transaction_id``
(only to the device that sent the event), ``membership`` and ``age``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, sync
from .rooms_support import ROOM, Rooms, make_rooms


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def timeline_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][ROOM]["timeline"]["events"]
    return events


def topic(rooms: Rooms, text: str) -> dict[str, Any]:
    return rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": text}, "")


async def test_state_event_replacing_another_has_prev_content_and_replaces_state(
    rooms: Rooms,
) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    (first,) = await rooms.ingest(topic(rooms, "one"))
    since = await rooms.now(ALICE)
    (second,) = await rooms.ingest(topic(rooms, "two"))
    body = await rooms.sync(ALICE, since=since)
    (event,) = timeline_events(body)
    assert event["event_id"] == second
    assert event["unsigned"]["replaces_state"] == first
    assert event["unsigned"]["prev_content"] == {"topic": "one"}
    served = await rooms.event(ALICE, ROOM, second)
    assert served["unsigned"]["replaces_state"] == first
    assert served["unsigned"]["prev_content"] == {"topic": "one"}
    # The first topic replaced nothing.
    served = await rooms.event(ALICE, ROOM, first)
    assert "replaces_state" not in served["unsigned"]
    assert "prev_content" not in served["unsigned"]


async def test_transaction_id_only_to_the_sending_device(rooms: Rooms) -> None:
    # The room server tags the event with session 1: the device Alice sent it from.
    phone = await rooms.device(ALICE, "PHONE", session_id=1)
    laptop = await rooms.device(ALICE, "LAPTOP", session_id=2)
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    since = await rooms.now(ALICE)
    (sent,) = await rooms.ingest(rooms.log.message(ROOM, ALICE, "from my phone", txn_id="t-1"))
    body = await sync(rooms.http, phone, since=since)
    assert timeline_events(body)[0]["unsigned"]["transaction_id"] == "t-1"
    body = await sync(rooms.http, laptop, since=since)
    assert "transaction_id" not in timeline_events(body)[0]["unsigned"]
    body = await rooms.sync(ALICE, since=since)  # Alice's first device, with no session
    assert "transaction_id" not in timeline_events(body)[0]["unsigned"]
    body = await rooms.sync(BOB, since=since)
    assert "transaction_id" not in timeline_events(body)[0]["unsigned"]
    # The read endpoints apply the same rule.
    rooms.tokens[ALICE] = phone
    assert (await rooms.event(ALICE, ROOM, sent))["unsigned"]["transaction_id"] == "t-1"
    page = await rooms.messages(ALICE, ROOM, limit=1)
    assert page["chunk"][0]["unsigned"]["transaction_id"] == "t-1"
    rooms.tokens[ALICE] = laptop
    assert "transaction_id" not in (await rooms.event(ALICE, ROOM, sent))["unsigned"]


async def test_membership_is_the_users_membership_at_the_event(rooms: Rooms) -> None:
    await rooms.room()
    (before,) = await rooms.say(ROOM, BOB, "before the invite")
    (invite,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "invite", sender=BOB))
    (invited,) = await rooms.say(ROOM, BOB, "while invited")
    join = await rooms.join(ROOM, ALICE)
    (joined,) = await rooms.say(ROOM, BOB, "after the join")
    page = await rooms.messages(ALICE, ROOM, limit=5)
    membership = {e["event_id"]: e["unsigned"]["membership"] for e in page["chunk"]}
    assert membership == {
        before: "leave",
        invite: "invite",
        invited: "invite",
        join: "join",
        joined: "join",
    }
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 5}}})
    in_sync = {e["event_id"]: e["unsigned"]["membership"] for e in timeline_events(body)}
    assert in_sync == membership
    # Bob's view of the same events: he was joined throughout.
    page = await rooms.messages(BOB, ROOM, limit=5)
    assert {e["unsigned"]["membership"] for e in page["chunk"]} == {"join"}


async def test_membership_after_a_leave_is_leave_on_the_leave(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    (last,) = await rooms.say(ROOM, BOB, "bye")
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    page = await rooms.messages(ALICE, ROOM, limit=2)
    assert [(e["event_id"], e["unsigned"]["membership"]) for e in page["chunk"]] == [
        (leave, "leave"),
        (last, "join"),
    ]


async def test_age_is_present_and_not_negative(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    (sent,) = await rooms.say(ROOM, BOB, "how old am I")
    body = await rooms.sync(ALICE)
    for event in timeline_events(body):
        age = event["unsigned"]["age"]
        assert isinstance(age, int) and age >= 0, event
    assert (await rooms.event(ALICE, ROOM, sent))["unsigned"]["age"] >= 0
    page = await rooms.messages(ALICE, ROOM, limit=3)
    assert all(e["unsigned"]["age"] >= 0 for e in page["chunk"])
