"""Sliding sync ``required_state``: explicit pairs, ``*``, ``$ME``, ``$LAZY`` (members of
the timeline's senders, once per connection), and changes only after the first time."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, SERVER
from .sliding_support import room_list, sliding

ROOM = f"!state:{SERVER}"


def keys(room: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in room.get("required_state", [])}


@pytest.fixture
async def log(service: Service) -> RoomLog:
    log = RoomLog(SERVER)
    messages = log.create_room(ROOM, ALICE, "State")
    messages += [log.member(ROOM, u, "join") for u in (BOB, CAROL)]
    messages += [log.message(ROOM, BOB, "bob speaks"), log.message(ROOM, ALICE, "alice speaks")]
    await service.ingest(messages)
    return log


async def test_wildcards_and_me(service: Service, http: httpx.AsyncClient, log: RoomLog) -> None:
    carol = await service.add_device(CAROL, "C")
    everything = await sliding(
        http, carol, {"lists": {"all": room_list(required_state=[["*", "*"]])}}
    )
    room = everything["rooms"][ROOM]
    assert keys(room) == {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.member", ALICE),
        ("m.room.member", BOB),
        ("m.room.member", CAROL),
    }
    me = await sliding(
        http,
        carol,
        {
            "conn_id": "me",
            "lists": {
                "all": room_list(required_state=[["m.room.member", "$ME"], ["m.room.name", ""]])
            },
        },
    )
    assert keys(me["rooms"][ROOM]) == {("m.room.member", CAROL), ("m.room.name", "")}
    members = await sliding(
        http,
        carol,
        {
            "conn_id": "members",
            "lists": {"all": room_list(required_state=[["m.room.member", "*"]])},
        },
    )
    assert keys(members["rooms"][ROOM]) == {("m.room.member", u) for u in (ALICE, BOB, CAROL)}


async def test_lazy_members_come_once_per_connection(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    request = {
        "lists": {"all": room_list(timeline_limit=1, required_state=[["m.room.member", "$LAZY"]])}
    }
    first = await sliding(http, carol, request)
    # The timeline is Alice's message: Alice's member event, and Carol's own.
    assert keys(first["rooms"][ROOM]) == {("m.room.member", ALICE), ("m.room.member", CAROL)}
    await service.ingest([log.message(ROOM, ALICE, "again"), log.message(ROOM, BOB, "bob again")])
    second = await sliding(
        http,
        carol,
        {
            "lists": {
                "all": room_list(timeline_limit=2, required_state=[["m.room.member", "$LAZY"]])
            }
        },
        pos=first["pos"],
    )
    # Bob is new to this connection; Alice was sent already.
    assert keys(second["rooms"][ROOM]) == {("m.room.member", BOB)}
    await service.ingest([log.message(ROOM, BOB, "more")])
    third = await sliding(
        http,
        carol,
        {
            "lists": {
                "all": room_list(timeline_limit=2, required_state=[["m.room.member", "$LAZY"]])
            }
        },
        pos=second["pos"],
    )
    assert keys(third["rooms"][ROOM]) == set()


async def test_state_changes_after_the_first_time_and_new_entries_asked_for(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    names = {"lists": {"all": room_list(required_state=[["m.room.name", ""]])}}
    first = await sliding(http, carol, names)
    assert keys(first["rooms"][ROOM]) == {("m.room.name", "")}
    await service.ingest([log.event(ROOM, ALICE, "m.room.name", {"name": "Renamed"}, "")])
    second = await sliding(http, carol, names, pos=first["pos"])
    room = second["rooms"][ROOM]
    assert [e["content"]["name"] for e in room["required_state"]] == ["Renamed"]
    assert room["name"] == "Renamed"
    # A topic change is not asked for: the room is sent (it has a new event) without it.
    await service.ingest([log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")])
    third = await sliding(http, carol, names, pos=second["pos"])
    assert keys(third["rooms"][ROOM]) == set()
    # Asking for more sends what is newly asked for, without new events.
    more = {
        "lists": {"all": room_list(required_state=[["m.room.name", ""], ["m.room.create", ""]])}
    }
    fourth = await sliding(http, carol, more, pos=third["pos"])
    assert keys(fourth["rooms"][ROOM]) == {("m.room.create", "")}
