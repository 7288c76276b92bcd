"""The client event format wherever events are served.

* ``unsigned`` holds only the keys the spec defines for client events; what the room
  server puts there for federation (``age_ts``, ``invite_room_state``,
  ``knock_room_state``, ...) never reaches a client, and stripped state only appears in
  ``invite_state`` / ``knock_state``.
* Events inside ``/sync`` carry no ``room_id`` (the spec's ``ClientEventWithoutRoomID``:
  the room is the key they sit under); ``/messages``, ``/context``, ``/event`` and
  ``/members`` keep it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL
from .rooms_support import (
    DAVE,
    ROOM,
    Rooms,
    make_rooms,
    pdu_of,
    redacted_event,
    redaction,
)

#: The spec's ``unsigned`` keys of a client event.
CLIENT_UNSIGNED = {
    "age",
    "prev_content",
    "replaces_state",
    "redacted_because",
    "transaction_id",
    "membership",
    "m.relations",
}
FEDERATION_ONLY = {"age_ts": 1_700_000_000_000, "prev_sender": BOB, "m.custom": 1}
STRIPPED = [
    {"type": "m.room.name", "state_key": "", "sender": BOB, "content": {"name": "From the PDU"}}
]


def events_in(body: Any) -> Iterator[dict[str, Any]]:
    """Every event (an object with an ``event_id``) anywhere in ``body``."""
    if isinstance(body, dict):
        if "event_id" in body:
            yield body
        for value in body.values():
            yield from events_in(value)
    elif isinstance(body, list):
        for value in body:
            yield from events_in(value)


def assert_client_unsigned(body: Any, where: str) -> int:
    """Check every event's ``unsigned`` (and that of its ``redacted_because``); how many."""
    n = 0
    for event in events_in(body):
        n += 1
        unsigned = event.get("unsigned", {})
        extra = set(unsigned) - CLIENT_UNSIGNED
        assert not extra, f"{where}: {event['event_id']} has unsigned {sorted(extra)}"
    return n


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    w = await make_rooms(service, http)
    await w.device(DAVE)
    return w


async def busy_room(rooms: Rooms) -> dict[str, str]:
    """A room whose PDUs carry federation ``unsigned`` fields: messages, a state change,
    an invite with ``invite_room_state``, a knock with ``knock_room_state``, a redaction."""
    log = rooms.log
    created = log.create_room(ROOM, BOB, name="Lobby")
    for message in created:
        pdu_of(message)["unsigned"] = dict(FEDERATION_ONLY)
    await rooms.ingest(*created)
    await rooms.join(ROOM, ALICE)
    said = log.message(ROOM, BOB, "hello")
    pdu_of(said)["unsigned"] = {**FEDERATION_ONLY, "age": 5}
    topic = log.event(ROOM, BOB, "m.room.topic", {"topic": "t2"}, "")
    pdu_of(topic)["unsigned"] = dict(FEDERATION_ONLY)
    invite = log.member(ROOM, CAROL, "invite", sender=BOB)
    pdu_of(invite)["unsigned"] = {**FEDERATION_ONLY, "invite_room_state": STRIPPED}
    knock = log.member(ROOM, DAVE, "knock")
    pdu_of(knock)["unsigned"] = {**FEDERATION_ONLY, "knock_room_state": STRIPPED}
    doomed = log.message(ROOM, BOB, "oops")
    redact = redaction(log, ROOM, BOB, pdu_of(doomed)["_event_id"])
    pdu_of(redact)["unsigned"] = dict(FEDERATION_ONLY)
    ids = await rooms.ingest(said, topic, invite, knock, doomed, redact)
    await rooms.ingest_raw(redacted_event(ids[4], redact))
    return dict(zip(("said", "topic", "invite", "knock", "doomed", "redaction"), ids, strict=True))


async def test_served_events_carry_only_client_unsigned_keys(rooms: Rooms) -> None:
    ids = await busy_room(rooms)
    seen = assert_client_unsigned(await rooms.sync(ALICE), "complete /sync")
    seen += assert_client_unsigned(
        await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 1}}}), "/sync state"
    )
    seen += assert_client_unsigned(await rooms.messages(ALICE, ROOM, limit=50), "/messages")
    for eid in ids.values():
        seen += assert_client_unsigned(await rooms.event(ALICE, ROOM, eid), "/event")
        seen += assert_client_unsigned(await rooms.context(ALICE, ROOM, eid), "/context")
    seen += assert_client_unsigned(await rooms.members(ALICE, ROOM), "/members")
    assert seen > 50
    # What the spec's keys say survives: prev_content of the topic, redacted_because.
    topic = await rooms.event(ALICE, ROOM, ids["topic"])
    assert "replaces_state" not in topic["unsigned"]  # the first topic replaced nothing
    doomed = await rooms.event(ALICE, ROOM, ids["doomed"])
    assert doomed["unsigned"]["redacted_because"]["event_id"] == ids["redaction"]


async def test_stripped_state_only_in_invite_and_knock_state(rooms: Rooms) -> None:
    await busy_room(rooms)
    carol = await rooms.sync(CAROL)
    invite_state = carol["rooms"]["invite"][ROOM]["invite_state"]["events"]
    names = [e for e in invite_state if e["type"] == "m.room.name"]
    assert [e["content"] for e in names] == [{"name": "From the PDU"}]
    dave = await rooms.sync(DAVE)
    knock_state = dave["rooms"]["knock"][ROOM]["knock_state"]["events"]
    names = [e for e in knock_state if e["type"] == "m.room.name"]
    assert [e["content"] for e in names] == [{"name": "From the PDU"}]
    assert knock_state[-1]["content"]["membership"] == "knock"


def sync_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every event of the rooms of a /sync body (timelines, state, state_after)."""
    out: list[dict[str, Any]] = []
    for kind in ("join", "leave"):
        for room in body.get("rooms", {}).get(kind, {}).values():
            for section in ("timeline", "state", "state_after", "org.matrix.msc4222.state_after"):
                out += room.get(section, {}).get("events", [])
    return out


async def test_sync_events_carry_no_room_id_and_the_read_endpoints_do(rooms: Rooms) -> None:
    ids = await busy_room(rooms)
    since = await rooms.now(ALICE)
    await rooms.say(ROOM, BOB, "news")
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "join"))
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "leave"))
    bodies = {
        "complete": await rooms.sync(ALICE),
        "incremental": await rooms.sync(ALICE, since=since),
        "full_state": await rooms.sync(ALICE, since=since, full_state=True),
        "state_after": await rooms.sync(ALICE, use_state_after=True),
        "lazy": await rooms.sync(
            ALICE, filter={"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
        ),
        "left room": await rooms.sync(CAROL, filter={"room": {"include_leave": True}}),
    }
    for name, body in bodies.items():
        events = sync_events(body)
        assert events, name
        with_room = [e["event_id"] for e in events if "room_id" in e]
        assert not with_room, f"{name}: {with_room}"
    # The redacted event (stored bytes rewritten by the redaction) too.
    timeline = bodies["complete"]["rooms"]["join"][ROOM]["timeline"]["events"]
    assert ids["doomed"] in {e["event_id"] for e in timeline}

    served = [
        *(await rooms.messages(ALICE, ROOM, limit=50))["chunk"],
        await rooms.event(ALICE, ROOM, ids["doomed"]),
        *(await rooms.members(ALICE, ROOM))["chunk"],
    ]
    context = await rooms.context(ALICE, ROOM, ids["topic"])
    served += [context["event"], *context["events_before"], *context["events_after"]]
    served += context["state"]
    assert all(e["room_id"] == ROOM for e in served)
