"""Sliding sync ``required_state``: explicit pairs, ``*``, ``$ME``, ``$LAZY`` (members of
the timeline's senders, once per connection), and changes only after the first time."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from trio_sync import Config, Service, open_service
from trio_sync.roomlog import RoomLog
from trio_sync.sliding.required_state import MAX_REMEMBERED
from trio_sync.storage import Conn

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


def asking(*pairs: list[str], timeline_limit: int = 5) -> dict[str, Any]:
    """A request for the one list with ``required_state`` ``pairs``."""
    return {"lists": {"all": room_list(timeline_limit=timeline_limit, required_state=list(pairs))}}


NAME = ["m.room.name", ""]
TOPIC = ["m.room.topic", ""]
CREATE = ["m.room.create", ""]


async def test_a_dropped_entry_asked_for_again_is_sent_only_if_it_changed(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    await service.ingest([log.event(ROOM, ALICE, "m.room.topic", {"topic": "first"}, "")])
    first = await sliding(http, carol, asking(NAME, TOPIC, CREATE))
    assert keys(first["rooms"][ROOM]) == {("m.room.name", ""), ("m.room.topic", "")} | {
        ("m.room.create", "")
    }
    # Topic and create are dropped; a message sends the room, without them.
    await service.ingest([log.message(ROOM, BOB, "hi")])
    second = await sliding(http, carol, asking(NAME), pos=first["pos"])
    assert keys(second["rooms"][ROOM]) == set()
    # The topic changes while it is not asked for: the change is not sent.
    await service.ingest([log.event(ROOM, ALICE, "m.room.topic", {"topic": "second"}, "")])
    third = await sliding(http, carol, asking(NAME), pos=second["pos"])
    assert keys(third["rooms"][ROOM]) == set()
    # Asked for again: the topic changed meanwhile and is sent as it is now; the create
    # event did not change, the client has it, and it is not sent again.
    fourth = await sliding(http, carol, asking(NAME, TOPIC, CREATE), pos=third["pos"])
    room = fourth["rooms"][ROOM]
    assert keys(room) == {("m.room.topic", "")}
    assert room["required_state"][0]["content"] == {"topic": "second"}
    # Nothing changed: dropping and re-adding the create event sends nothing at all.
    fifth = await sliding(http, carol, asking(NAME, TOPIC), pos=fourth["pos"])
    sixth = await sliding(http, carol, asking(NAME, TOPIC, CREATE), pos=fifth["pos"])
    assert fifth["rooms"] == sixth["rooms"] == {}


async def test_a_dropped_entry_is_remembered_across_a_restart(config: Config) -> None:
    async with open_service(config) as service:
        log = RoomLog(SERVER)
        messages = log.create_room(ROOM, ALICE, "State")
        messages += [log.member(ROOM, CAROL, "join")]
        await service.ingest(messages)
        carol = await service.add_device(CAROL, "C")
        async with httpx.AsyncClient(base_url=service.addresses[0]) as http:
            first = await sliding(http, carol, asking(NAME, CREATE))
            await service.ingest([log.message(ROOM, ALICE, "hi")])
            second = await sliding(http, carol, asking(NAME), pos=first["pos"])
            assert keys(second["rooms"][ROOM]) == set()
    async with (
        open_service(config) as service,
        httpx.AsyncClient(base_url=service.addresses[0]) as http,
    ):
        # The create event is unchanged: asking for it again sends nothing.
        third = await sliding(http, carol, asking(NAME, CREATE), pos=second["pos"])
        assert third["rooms"] == {}
        await service.ingest([log.event(ROOM, ALICE, "m.room.name", {"name": "New"}, "")])
        fourth = await sliding(http, carol, asking(NAME), pos=third["pos"])
        assert keys(fourth["rooms"][ROOM]) == {("m.room.name", "")}


async def test_wildcards_added_send_only_what_the_client_lacks_and_dropped_ones_are_forgotten(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    first = await sliding(http, carol, asking(["m.room.member", "$ME"]))
    assert keys(first["rooms"][ROOM]) == {("m.room.member", CAROL)}
    # Every member: those the client lacks, not Carol's own again.
    members = ["m.room.member", "*"]
    second = await sliding(http, carol, asking(members), pos=first["pos"])
    assert keys(second["rooms"][ROOM]) == {("m.room.member", ALICE), ("m.room.member", BOB)}
    # Everything: the rest of the state, no member again.
    third = await sliding(http, carol, asking(["*", "*"]), pos=second["pos"])
    assert keys(third["rooms"][ROOM]) == {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
    }
    # Narrowed to members while a message arrives: the wildcard is forgotten, so asking
    # for everything again sends everything that is not a member.
    await service.ingest([log.message(ROOM, BOB, "hi")])
    fourth = await sliding(http, carol, asking(members), pos=third["pos"])
    assert keys(fourth["rooms"][ROOM]) == set()
    fifth = await sliding(http, carol, asking(["*", "*"]), pos=fourth["pos"])
    assert keys(fifth["rooms"][ROOM]) == {
        k for k in keys(third["rooms"][ROOM]) if k[0] != "m.room.member"
    }
    # Narrowed with nothing happening: the room is not sent, and still holds everything.
    sixth = await sliding(http, carol, asking(NAME), pos=fifth["pos"])
    seventh = await sliding(http, carol, asking(["*", "*"]), pos=sixth["pos"])
    assert sixth["rooms"] == seventh["rooms"] == {}


async def test_lazy_members_dropped_and_asked_for_again(
    service: Service, http: httpx.AsyncClient, log: RoomLog
) -> None:
    carol = await service.add_device(CAROL, "C")
    lazy = ["m.room.member", "$LAZY"]
    first = await sliding(http, carol, asking(lazy, timeline_limit=2))
    # The timeline holds Bob's and Alice's messages.
    assert keys(first["rooms"][ROOM]) == {("m.room.member", u) for u in (ALICE, BOB, CAROL)}
    # Lazy members dropped; Bob changes his display name meanwhile (not sent).
    await service.ingest([log.member(ROOM, BOB, "join", displayname="Bobby")])
    second = await sliding(http, carol, asking(NAME, timeline_limit=2), pos=first["pos"])
    assert keys(second["rooms"][ROOM]) == {("m.room.name", "")}
    # Asked for again with Alice and Bob speaking: Bob's membership changed unseen and is
    # sent again; Alice's did not, and is not.
    await service.ingest([log.message(ROOM, ALICE, "a"), log.message(ROOM, BOB, "b")])
    third = await sliding(http, carol, asking(lazy, timeline_limit=2), pos=second["pos"])
    room = third["rooms"][ROOM]
    assert keys(room) == {("m.room.member", BOB)}
    assert room["required_state"][0]["content"]["displayname"] == "Bobby"


async def _lazy_held(conn: Conn) -> list[str]:
    """The ``$LAZY`` members the newest stored row of the room remembers."""
    text = await conn.fetchval(
        "SELECT lazy_members FROM sliding_rooms WHERE room_id = $1 ORDER BY pos DESC LIMIT 1",
        ROOM,
    )
    held: list[str] = orjson.loads(str(text))
    return held


async def test_lazy_members_remembered_are_bounded_and_forgotten_ones_sent_again(
    config: Config,
) -> None:
    batch = 30
    senders = [f"@u{n:03}:{SERVER}" for n in range(4 * batch)]
    assert len(senders) > MAX_REMEMBERED
    lazy = asking(["m.room.member", "$LAZY"], timeline_limit=batch)
    members = [("m.room.member", u) for u in senders]
    log = RoomLog(SERVER)
    async with open_service(config) as service:
        messages = log.create_room(ROOM, ALICE, "State")
        messages += [log.member(ROOM, u, "join") for u in [CAROL, *senders]]
        # A full timeline of Alice's: the first response's lazy members are hers and Carol's.
        messages += [log.message(ROOM, ALICE, f"a{n}") for n in range(batch)]
        await service.ingest(messages)
        carol = await service.add_device(CAROL, "C")
        async with httpx.AsyncClient(base_url=service.addresses[0]) as http:
            body = await sliding(http, carol, lazy)
            assert keys(body["rooms"][ROOM]) == {("m.room.member", u) for u in (ALICE, CAROL)}
            for start in range(0, len(senders), batch):
                group = senders[start : start + batch]
                await service.ingest([log.message(ROOM, u, "hello") for u in group])
                body = await sliding(http, carol, lazy, pos=body["pos"])
                # Every sender is new to the connection.
                assert keys(body["rooms"][ROOM]) == set(members[start : start + batch])
                assert len(await service.engine.read(_lazy_held)) <= MAX_REMEMBERED
        held = await service.engine.read(_lazy_held)
        # Carol, then the senders most recently seen, newest first.
        assert held == [CAROL, *reversed(senders)][:MAX_REMEMBERED]
    # After a restart (the set comes from the database): the oldest sender and Alice were
    # forgotten, so their member events are sent again when they next speak; a sender
    # still remembered, and Carol herself, are not.
    oldest, kept, newest = senders[0], senders[batch - 5], senders[-1]
    assert oldest not in held and ALICE not in held and kept in held
    async with (
        open_service(config) as service,
        httpx.AsyncClient(base_url=service.addresses[0]) as http,
    ):
        await service.ingest([log.message(ROOM, u, "again") for u in (oldest, kept, newest, ALICE)])
        body = await sliding(http, carol, lazy, pos=body["pos"])
        assert keys(body["rooms"][ROOM]) == {("m.room.member", u) for u in (oldest, ALICE)}
        await service.ingest([log.message(ROOM, oldest, "once more")])
        body = await sliding(http, carol, lazy, pos=body["pos"])
        assert keys(body["rooms"][ROOM]) == set()
        assert len(await service.engine.read(_lazy_held)) == MAX_REMEMBERED
