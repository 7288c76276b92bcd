"""Every part of a /sync filter: event_fields, event_format, rooms, state and timeline
event rules (types with wildcards, senders, contains_url), lazy-loaded members, and the
400 for a filter of the wrong shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, SYNC_PATH, auth, rooms_of, state_keys, timeline_ids
from .rooms_support import OTHER, ROOM, ROOM_STATE, Rooms, make_rooms, member_keys, user


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


async def joined(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE)


def timeline_events(body: dict[str, Any], room_id: str = ROOM) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][room_id]["timeline"]["events"]
    return events


def state_events(body: dict[str, Any], room_id: str = ROOM) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = body["rooms"]["join"][room_id]["state"]["events"]
    return events


# --- event_fields and event_format ---------------------------------------------------------


async def test_event_fields_keep_only_the_named_fields(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    relates = {"rel_type": "m.thread", "event_id": "$root"}
    content = {"msgtype": "m.text", "body": "in a thread", "m.relates_to": relates}
    (sent,) = await rooms.ingest(rooms.log.event(ROOM, BOB, "m.room.message", content))
    fields = ["type", "event_id", "content.body", "content.m\\.relates_to"]
    body = await rooms.sync(ALICE, since=since, filter={"event_fields": fields})
    assert timeline_events(body) == [
        {
            "type": "m.room.message",
            "event_id": sent,
            "content": {"body": "in a thread", "m.relates_to": relates},
        }
    ]


async def test_event_fields_apply_to_state_events(rooms: Rooms) -> None:
    await joined(rooms)
    body = await rooms.sync(
        ALICE,
        filter={
            "event_fields": ["type", "state_key", "content"],
            "room": {"timeline": {"limit": 1}},
        },
    )
    state = state_events(body)
    assert state, "a complete sync with a one-event timeline has state"
    for event in state:
        assert set(event) == {"type", "state_key", "content"}, event
    name = next(e for e in state if e["type"] == "m.room.name")
    assert name == {"type": "m.room.name", "state_key": "", "content": {"name": "Lobby"}}


async def test_event_format_federation_serves_pdus(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    message = rooms.log.message(ROOM, BOB, "as a pdu")
    (sent,) = await rooms.ingest(message)
    pdu = message["new_room_event"]["event"]
    body = await rooms.sync(ALICE, since=since, filter={"event_format": "federation"})
    (event,) = timeline_events(body)
    assert event["event_id"] == sent
    assert event["depth"] == pdu["depth"]
    assert event["prev_events"] == pdu["prev_events"]
    assert event["auth_events"] == pdu["auth_events"]
    assert event["hashes"] == pdu["hashes"]
    assert event["origin"] == pdu["origin"]
    assert not any(k.startswith("_") for k in event)
    # The client format has none of the PDU fields.
    body = await rooms.sync(ALICE, since=since)
    (client,) = timeline_events(body)
    assert client["event_id"] == sent
    assert not {"depth", "prev_events", "auth_events", "hashes"} & set(client)


async def test_event_format_federation_applies_to_state(rooms: Rooms) -> None:
    await joined(rooms)
    body = await rooms.sync(
        ALICE, filter={"event_format": "federation", "room": {"timeline": {"limit": 1}}}
    )
    state = state_events(body)
    assert state
    assert all("depth" in e and "prev_events" in e for e in state)


# --- rooms, not_rooms ------------------------------------------------------------------------


async def test_rooms_and_not_rooms(rooms: Rooms) -> None:
    await joined(rooms)
    await rooms.room(OTHER, creator=BOB, name="Other")
    await rooms.join(OTHER, ALICE)
    body = await rooms.sync(ALICE, filter={"room": {"rooms": [OTHER]}})
    assert rooms_of(body, "join") == {OTHER}
    body = await rooms.sync(ALICE, filter={"room": {"not_rooms": [OTHER]}})
    assert rooms_of(body, "join") == {ROOM}
    body = await rooms.sync(ALICE, filter={"room": {"rooms": [ROOM, OTHER], "not_rooms": [ROOM]}})
    assert rooms_of(body, "join") == {OTHER}
    since = await rooms.now(ALICE)
    await rooms.say(ROOM, BOB, "here")
    await rooms.say(OTHER, BOB, "there")
    body = await rooms.sync(ALICE, since=since, filter={"room": {"rooms": [ROOM]}})
    assert rooms_of(body, "join") == {ROOM}


# --- state types -----------------------------------------------------------------------------


async def test_state_types_and_not_types(rooms: Rooms) -> None:
    await joined(rooms)
    one = {"limit": 1}
    body = await rooms.sync(
        ALICE,
        filter={"room": {"timeline": one, "state": {"types": ["m.room.name", "m.room.create"]}}},
    )
    assert state_keys(body, "join", ROOM) == {("m.room.name", ""), ("m.room.create", "")}
    body = await rooms.sync(
        ALICE, filter={"room": {"timeline": one, "state": {"not_types": ["m.room.member"]}}}
    )
    # Alice's join is the one timeline event.
    assert state_keys(body, "join", ROOM) == {k for k in ROOM_STATE if k[0] != "m.room.member"}
    body = await rooms.sync(
        ALICE, filter={"room": {"timeline": one, "state": {"types": ["m.room.*_rules", "*.name"]}}}
    )
    assert state_keys(body, "join", ROOM) == {("m.room.join_rules", ""), ("m.room.name", "")}


# --- timeline rules --------------------------------------------------------------------------


async def test_timeline_types_with_wildcards(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    sent = await rooms.ingest(
        rooms.log.event(ROOM, BOB, "org.example.a", {"n": 1}),
        rooms.log.message(ROOM, BOB, "plain"),
        rooms.log.event(ROOM, BOB, "org.example.b", {"n": 2}),
        rooms.log.event(ROOM, BOB, "org.other.c", {"n": 3}),
    )
    body = await rooms.sync(
        ALICE, since=since, filter={"room": {"timeline": {"types": ["org.example.*"]}}}
    )
    assert timeline_ids(body, "join", ROOM) == [sent[0], sent[2]]
    body = await rooms.sync(ALICE, since=since, filter={"room": {"timeline": {"types": ["*"]}}})
    assert timeline_ids(body, "join", ROOM) == sent
    body = await rooms.sync(
        ALICE, since=since, filter={"room": {"timeline": {"not_types": ["org.*"]}}}
    )
    assert timeline_ids(body, "join", ROOM) == [sent[1]]


async def test_timeline_senders_and_not_senders(rooms: Rooms) -> None:
    await joined(rooms)
    await rooms.join(ROOM, CAROL)
    since = await rooms.now(ALICE)
    (b1,) = await rooms.say(ROOM, BOB, "b1")
    (c1,) = await rooms.say(ROOM, CAROL, "c1")
    (b2,) = await rooms.say(ROOM, BOB, "b2")
    body = await rooms.sync(ALICE, since=since, filter={"room": {"timeline": {"senders": [CAROL]}}})
    assert timeline_ids(body, "join", ROOM) == [c1]
    body = await rooms.sync(
        ALICE, since=since, filter={"room": {"timeline": {"not_senders": [CAROL]}}}
    )
    assert timeline_ids(body, "join", ROOM) == [b1, b2]


async def test_timeline_contains_url(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    image = {"msgtype": "m.image", "body": "cat.png", "url": "mxc://example.org/cat"}
    (img,) = await rooms.ingest(rooms.log.event(ROOM, BOB, "m.room.message", image))
    (text,) = await rooms.say(ROOM, BOB, "no url here")
    body = await rooms.sync(
        ALICE, since=since, filter={"room": {"timeline": {"contains_url": True}}}
    )
    assert timeline_ids(body, "join", ROOM) == [img]
    body = await rooms.sync(
        ALICE, since=since, filter={"room": {"timeline": {"contains_url": False}}}
    )
    assert timeline_ids(body, "join", ROOM) == [text]


# --- lazy_load_members -----------------------------------------------------------------------


async def crowded(rooms: Rooms) -> list[str]:
    """Bob's room with user1 to user6, then Alice: Bob and user1 to user4 are Alice's heroes."""
    await rooms.room()
    others = [user(n) for n in range(1, 7)]
    for u in others:
        await rooms.join(ROOM, u)
    await rooms.join(ROOM, ALICE)
    return others


LAZY = {"lazy_load_members": True}


async def test_lazy_load_members_sends_senders_heroes_and_own_member_only(
    rooms: Rooms,
) -> None:
    others = await crowded(rooms)
    await rooms.say(ROOM, others[5], "from user6")
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 1}, "state": LAZY}})
    heroes = body["rooms"]["join"][ROOM]["summary"]["m.heroes"]
    assert heroes == [BOB, *others[:4]]
    state = state_events(body)
    assert member_keys(state) == {ALICE, others[5], *heroes}
    assert others[4] not in member_keys(state)
    assert {k for k in state_keys(body, "join", ROOM) if k[0] != "m.room.member"} == {
        k for k in ROOM_STATE if k[0] != "m.room.member"
    }


async def test_lazy_load_members_does_not_resend_members_in_incremental_sync(
    rooms: Rooms,
) -> None:
    others = await crowded(rooms)
    filt = {"room": {"timeline": {"limit": 1}, "state": LAZY}}
    await rooms.say(ROOM, others[5], "first")
    body = await rooms.sync(ALICE, filter=filt)
    assert others[5] in member_keys(state_events(body))
    since = body["next_batch"]
    (again,) = await rooms.say(ROOM, others[5], "again")
    body = await rooms.sync(ALICE, since=since, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [again]
    assert member_keys(state_events(body)) == set()
    since = body["next_batch"]
    # A sender not sent before is sent now.
    (new,) = await rooms.say(ROOM, others[4], "hello from user5")
    body = await rooms.sync(ALICE, since=since, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [new]
    assert member_keys(state_events(body)) == {others[4]}


async def test_include_redundant_members_resends_members(rooms: Rooms) -> None:
    others = await crowded(rooms)
    filt = {
        "room": {
            "timeline": {"limit": 1},
            "state": {"lazy_load_members": True, "include_redundant_members": True},
        }
    }
    await rooms.say(ROOM, others[5], "first")
    since = (await rooms.sync(ALICE, filter=filt))["next_batch"]
    await rooms.say(ROOM, others[5], "again")
    body = await rooms.sync(ALICE, since=since, filter=filt)
    keys = member_keys(state_events(body))
    assert {others[5], ALICE} <= keys
    assert others[4] not in keys


async def test_lazy_load_members_still_sends_membership_changes_in_the_gap(
    rooms: Rooms,
) -> None:
    others = await crowded(rooms)
    filt = {"room": {"timeline": {"limit": 2}, "state": LAZY}}
    since = (await rooms.sync(ALICE, filter=filt))["next_batch"]
    # user5 (neither a hero nor a sender) leaves, then enough happens to make a gap.
    (left,) = await rooms.ingest(rooms.log.member(ROOM, others[4], "leave"))
    sent = await rooms.say(ROOM, BOB, "m1", "m2", "m3")
    body = await rooms.sync(ALICE, since=since, filter=filt)
    assert timeline_ids(body, "join", ROOM) == sent[1:]
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True
    assert left in [e["event_id"] for e in state_events(body)]


# --- invalid filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filt",
    [
        '{"room": {"timeline": []}}',
        '{"room": {"state": "all"}}',
        '{"room": {"timeline": {"types": "m.room.message"}}}',
        '{"room": {"timeline": {"not_senders": "@bob:example.org"}}}',
        '{"room": {"timeline": {"types": [0]}}}',
        '{"room": {"state": {"not_types": [null]}}}',
        '{"room": {"rooms": ["lobby"]}}',
        '{"room": {"not_rooms": ["#alias:example.org"]}}',
        '{"room": {"timeline": {"senders": ["bob"]}}}',
        '{"room": {"timeline": {"not_senders": ["bob:example.org"]}}}',
        '{"room": {"state": {"lazy_load_members": "true"}}}',
        '{"room": {"state": {"include_redundant_members": 1}}}',
        '{"room": {"timeline": {"contains_url": "yes"}}}',
        '{"room": {"include_leave": "true"}}',
        '{"event_fields": "content.body"}',
        '{"event_fields": [1]}',
        '{"event_format": "xml"}',
        '{"presence": []}',
    ],
)
async def test_invalid_filter_is_a_400(rooms: Rooms, filt: str) -> None:
    r = await rooms.http.get(SYNC_PATH, params={"filter": filt}, headers=auth(rooms.tokens[ALICE]))
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_BAD_JSON"
