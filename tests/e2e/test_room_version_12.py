"""Room version 12 rooms: the ``m.room.create`` PDU has no ``room_id``; the room's ID is
``!`` followed by the create event's ID without its ``$`` (its reference hash)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB
from .rooms_support import Rooms, make_rooms, pdu_of


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def v12_room(rooms: Rooms) -> tuple[str, list[dict[str, Any]]]:
    """A version 12 room made by Bob, Alice joined: its ID and its messages."""
    log = rooms.log
    create = log.event("!unused", BOB, "m.room.create", {"room_version": "12"}, "")
    pdu = pdu_of(create)
    pdu["_room_version"] = "12"
    del pdu["room_id"]
    room_id = "!" + pdu["_event_id"][1:]
    rest = [
        log.member(room_id, BOB, "join"),
        log.event(room_id, BOB, "m.room.name", {"name": "Hashed"}, ""),
        log.member(room_id, ALICE, "join"),
        log.message(room_id, BOB, "hello v12"),
    ]
    for message in rest:
        pdu_of(message)["_room_version"] = "12"
    return room_id, [create, *rest]


async def test_a_version_12_room_is_ingested_with_its_create_event(rooms: Rooms) -> None:
    room_id, messages = v12_room(rooms)
    create_id = pdu_of(messages[0])["_event_id"]
    await rooms.ingest(*messages)
    event = await rooms.event(ALICE, room_id, create_id)
    assert event["type"] == "m.room.create" and event["room_id"] == room_id
    assert event["content"] == {"room_version": "12"}
    state = {
        (e["type"], e["state_key"]): e
        for e in (await rooms.sync(ALICE))["rooms"]["join"][room_id]["timeline"]["events"]
        if "state_key" in e
    }
    assert state[("m.room.create", "")]["event_id"] == create_id
    context = await rooms.context(ALICE, room_id, create_id)
    kinds = {(e["type"], e["state_key"]) for e in context["state"]}
    assert ("m.room.create", "") in kinds
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 1}}})
    joined = body["rooms"]["join"][room_id]
    assert "m.room.create" in {e["type"] for e in joined["state"]["events"]}


async def test_a_create_event_naming_another_room_is_rejected(rooms: Rooms) -> None:
    _, messages = v12_room(rooms)
    pdu_of(messages[0])["room_id"] = "!somewhere:example.org"
    applied = await rooms.service.ingest(messages[:1])
    assert applied.rejected == 1


async def test_a_create_whose_state_names_another_room_is_rejected(rooms: Rooms) -> None:
    """The message's other events must be in the room the create event's ID makes."""
    _, messages = v12_room(rooms)
    other = rooms.log.event("!other:example.org", BOB, "m.room.topic", {"topic": "x"}, "")
    body = messages[0]["new_room_event"]
    body["AddStateEvents"] = [pdu_of(other)]
    body["adds_state_event_ids"] = [pdu_of(messages[0])["_event_id"], pdu_of(other)["_event_id"]]
    applied = await rooms.service.ingest(messages[:1])
    assert applied.rejected == 1


async def test_only_version_12_create_events_may_leave_out_room_id(rooms: Rooms) -> None:
    _, messages = v12_room(rooms)
    pdu_of(messages[0])["_room_version"] = "11"
    applied = await rooms.service.ingest(messages[:1])
    assert applied.rejected == 1
