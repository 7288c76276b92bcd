"""/sync room sections: full_state, redactions, federated invites, knocks, leaves and bans,
repeated joins, the room summary and state_after (MSC4222)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import trio

from trio_sync import Service

from .conftest import (
    ALICE,
    BOB,
    CAROL,
    rooms_of,
    state_ids,
    state_keys,
    timeline_ids,
)
from .rooms_support import (
    DAVE,
    OTHER,
    REMOTE_ROOM,
    RITA,
    ROOM,
    ROOM_STATE,
    Rooms,
    by_key,
    make_rooms,
    member_keys,
    redacted_event,
    redaction,
    remote_invite,
    user,
)


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


async def joined(rooms: Rooms, room_id: str = ROOM) -> list[str]:
    created = await rooms.room(room_id, name="Lobby" if room_id == ROOM else "Other")
    return [*created, await rooms.join(room_id, ALICE)]


def topic(rooms: Rooms, text: str, room_id: str = ROOM) -> dict[str, Any]:
    return rooms.log.event(room_id, BOB, "m.room.topic", {"topic": text}, "")


def section(body: dict[str, Any], kind: str = "join", room_id: str = ROOM) -> dict[str, Any]:
    value: dict[str, Any] = body["rooms"][kind][room_id]
    return value


def timeline_events(body: dict[str, Any], kind: str = "join") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = section(body, kind)["timeline"]["events"]
    return events


# --- full_state ------------------------------------------------------------------------------


async def test_full_state_with_since_sends_all_state_and_only_new_events(rooms: Rooms) -> None:
    await joined(rooms)
    await joined(rooms, OTHER)
    since = await rooms.now(ALICE)
    sent = await rooms.say(ROOM, BOB, "new")
    with trio.fail_after(20):
        body = await rooms.sync(ALICE, since=since, full_state=True, timeout=600_000)
    assert rooms_of(body, "join") == {ROOM, OTHER}
    assert timeline_ids(body, "join", ROOM) == sent
    assert timeline_ids(body, "join", OTHER) == []
    assert state_keys(body, "join", ROOM) == ROOM_STATE
    assert state_keys(body, "join", OTHER) == ROOM_STATE


async def test_full_state_without_new_events_returns_at_once(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    with trio.fail_after(20):
        body = await rooms.sync(ALICE, since=since, full_state=True, timeout=600_000)
    assert rooms_of(body, "join") == {ROOM}
    assert timeline_ids(body, "join", ROOM) == []
    assert state_keys(body, "join", ROOM) == ROOM_STATE


async def test_full_state_timeline_is_still_limited_by_since(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    sent = await rooms.say(ROOM, BOB, "a", "b", "c")
    body = await rooms.sync(
        ALICE, since=since, full_state=True, filter={"room": {"timeline": {"limit": 2}}}
    )
    assert timeline_ids(body, "join", ROOM) == sent[1:]
    assert section(body)["timeline"]["limited"] is True
    assert state_keys(body, "join", ROOM) == ROOM_STATE


# --- redactions ------------------------------------------------------------------------------


async def test_redacted_message_is_served_redacted_with_its_redaction(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (secret,) = await rooms.say(ROOM, BOB, "a secret")
    because = redaction(rooms.log, ROOM, BOB, secret)
    (redacts,) = await rooms.ingest(because)
    await rooms.ingest_raw(redacted_event(secret, because))
    body = await rooms.sync(ALICE, since=since)
    assert timeline_ids(body, "join", ROOM) == [secret, redacts]
    redacted, redaction_event = timeline_events(body)
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redacts
    assert redaction_event["type"] == "m.room.redaction"
    assert redaction_event["redacts"] == secret
    assert b"a secret" not in orjson.dumps(body)
    served = await rooms.event(ALICE, ROOM, secret)
    assert served["content"] == {}
    assert served["unsigned"]["redacted_because"]["event_id"] == redacts
    page = await rooms.messages(ALICE, ROOM, limit=2)
    assert [e["event_id"] for e in page["chunk"]] == [redacts, secret]
    assert page["chunk"][1]["content"] == {}


async def test_redacted_state_event_is_redacted_in_state(rooms: Rooms) -> None:
    await joined(rooms)
    (bad,) = await rooms.ingest(topic(rooms, "rude words"))
    because = redaction(rooms.log, ROOM, BOB, bad)
    (redacts,) = await rooms.ingest(because)
    await rooms.ingest_raw(redacted_event(bad, because))
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 1}}})
    assert timeline_ids(body, "join", ROOM) == [redacts]
    state = by_key(section(body)["state"]["events"])
    assert state[("m.room.topic", "")]["event_id"] == bad
    assert state[("m.room.topic", "")]["content"] == {}
    assert state[("m.room.topic", "")]["unsigned"]["redacted_because"]["event_id"] == redacts
    assert b"rude words" not in orjson.dumps(body)


# --- invites over federation ------------------------------------------------------------------


async def test_federated_invite_appears_with_its_invite_state(rooms: Rooms) -> None:
    since = await rooms.now(ALICE)
    _, message = remote_invite(ALICE)
    await rooms.ingest_raw(message)
    for body in (await rooms.sync(ALICE, since=since), await rooms.sync(ALICE)):
        assert rooms_of(body, "invite") == {REMOTE_ROOM}
        assert rooms_of(body, "join") == rooms_of(body, "leave") == set()
        events = body["rooms"]["invite"][REMOTE_ROOM]["invite_state"]["events"]
        state = by_key(events)
        assert state[("m.room.create", "")]["content"] == {"room_version": "10"}
        assert state[("m.room.name", "")]["content"] == {"name": "Far away"}
        last = events[-1]
        assert (last["type"], last["state_key"], last["sender"]) == ("m.room.member", ALICE, RITA)
        assert last["content"]["membership"] == "invite"


async def test_retired_federated_invite_becomes_a_left_room(rooms: Rooms) -> None:
    invite_id, message = remote_invite(ALICE)
    await rooms.ingest_raw(message)
    since = await rooms.now(ALICE)
    await rooms.ingest_raw(
        {
            "type": "retire_invite_event",
            "retire_invite_event": {
                "EventID": invite_id,
                "TargetUserID": ALICE,
                "Membership": "leave",
            },
        }
    )
    body = await rooms.sync(ALICE, since=since)
    assert rooms_of(body, "leave") == {REMOTE_ROOM}
    assert rooms_of(body, "invite") == set()
    body = await rooms.sync(ALICE)
    assert rooms_of(body, "invite") == rooms_of(body, "leave") == set()


# --- knocks ----------------------------------------------------------------------------------


def _is_stripped(event: dict[str, Any]) -> bool:
    return set(event) <= {"type", "state_key", "sender", "content"}


async def test_knock_shows_knock_state_with_the_knock_last(rooms: Rooms) -> None:
    await rooms.room()
    since = await rooms.now(ALICE)
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "knock", reason="let me in"))
    for body in (await rooms.sync(ALICE, since=since), await rooms.sync(ALICE)):
        assert set(body["rooms"].get("knock", {})) == {ROOM}
        assert rooms_of(body, "join") == rooms_of(body, "invite") == set()
        assert rooms_of(body, "leave") == set()
        events = body["rooms"]["knock"][ROOM]["knock_state"]["events"]
        assert all(_is_stripped(e) for e in events), events
        state = by_key(events)
        assert ("m.room.create", "") in state
        assert state[("m.room.name", "")]["content"] == {"name": "Lobby"}
        assert ("m.room.join_rules", "") in state
        assert events[-1] == {
            "type": "m.room.member",
            "state_key": ALICE,
            "sender": ALICE,
            "content": {"membership": "knock", "reason": "let me in"},
        }


async def test_rejected_knock_becomes_a_left_room(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "knock"))
    since = await rooms.now(ALICE)
    (rejected,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave", sender=BOB))
    await rooms.say(ROOM, BOB, "not for alice")
    body = await rooms.sync(ALICE, since=since)
    assert rooms_of(body, "leave") == {ROOM}
    assert ROOM not in body["rooms"].get("knock", {})
    assert timeline_ids(body, "leave", ROOM) == [rejected]
    body = await rooms.sync(ALICE)
    assert "knock" not in body.get("rooms", {}) or ROOM not in body["rooms"]["knock"]


async def test_invite_after_a_knock_moves_the_room_to_invites(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "knock"))
    since = await rooms.now(ALICE)
    await rooms.ingest(rooms.log.member(ROOM, ALICE, "invite", sender=BOB))
    body = await rooms.sync(ALICE, since=since)
    assert rooms_of(body, "invite") == {ROOM}
    assert ROOM not in body["rooms"].get("knock", {})
    last = body["rooms"]["invite"][ROOM]["invite_state"]["events"][-1]
    assert (last["state_key"], last["content"]["membership"]) == (ALICE, "invite")


# --- leaves and bans -------------------------------------------------------------------------


async def test_ban_in_incremental_sync_archives_history_before_it(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (m1,) = await rooms.say(ROOM, BOB, "last words")
    (ban,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "ban", sender=BOB))
    later = await rooms.ingest(rooms.log.message(ROOM, BOB, "gone"), topic(rooms, "after"))
    body = await rooms.sync(ALICE, since=since)
    assert rooms_of(body, "leave") == {ROOM}
    assert rooms_of(body, "join") == set()
    assert timeline_ids(body, "leave", ROOM) == [m1, ban]
    assert timeline_events(body, "leave")[-1]["content"]["membership"] == "ban"
    assert not set(later) & set(state_ids(body, "leave", ROOM))
    # Complete syncs show it only with include_leave, and only up to the ban.
    assert rooms_of(await rooms.sync(ALICE), "leave") == set()
    body = await rooms.sync(ALICE, filter={"room": {"include_leave": True}})
    assert rooms_of(body, "leave") == {ROOM}
    assert timeline_ids(body, "leave", ROOM)[-2:] == [m1, ban]
    assert ("m.room.topic", "") not in state_keys(body, "leave", ROOM)


async def test_archived_room_pages_back_from_its_prev_batch(rooms: Rooms) -> None:
    history = await joined(rooms)
    history += await rooms.say(ROOM, BOB, *(f"m{i}" for i in range(5)))
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    history.append(leave)
    await rooms.say(ROOM, BOB, "after the leave")
    body = await rooms.sync(
        ALICE, filter={"room": {"include_leave": True, "timeline": {"limit": 3}}}
    )
    assert timeline_ids(body, "leave", ROOM) == history[-3:]
    timeline = section(body, "leave")["timeline"]
    assert timeline["limited"] is True
    earlier = await rooms.page_all(ALICE, ROOM, **{"from": timeline["prev_batch"], "limit": 4})
    assert earlier == list(reversed(history[:-3]))


# --- repeated joins --------------------------------------------------------------------------


async def test_repeated_join_is_not_a_new_join(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    again = await rooms.join(ROOM, ALICE)
    body = await rooms.sync(ALICE, since=since)
    assert rooms_of(body, "join") == {ROOM}
    assert timeline_ids(body, "join", ROOM) == [again]
    assert state_ids(body, "join", ROOM) == []


async def test_displayname_change_is_a_state_change_in_the_timeline(rooms: Rooms) -> None:
    history = await joined(rooms)
    since = await rooms.now(ALICE)
    rename = await rooms.join(ROOM, ALICE, displayname="Alice")
    body = await rooms.sync(ALICE, since=since)
    assert timeline_ids(body, "join", ROOM) == [rename]
    assert state_ids(body, "join", ROOM) == []
    (event,) = timeline_events(body)
    assert event["state_key"] == ALICE
    assert event["content"] == {"membership": "join", "displayname": "Alice"}
    assert event["unsigned"]["prev_content"] == {"membership": "join"}
    assert event["unsigned"]["replaces_state"] == history[-1]


# --- room summary ----------------------------------------------------------------------------


async def test_summary_on_initial_sync(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, CAROL)
    await rooms.ingest(rooms.log.member(ROOM, DAVE, "invite", sender=BOB))
    await rooms.join(ROOM, ALICE)
    body = await rooms.sync(ALICE)
    assert section(body)["summary"] == {
        "m.heroes": [BOB, CAROL, DAVE],
        "m.joined_member_count": 3,
        "m.invited_member_count": 1,
    }


async def test_summary_when_membership_changes(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, CAROL)
    await rooms.ingest(rooms.log.member(ROOM, DAVE, "invite", sender=BOB))
    await rooms.join(ROOM, ALICE)
    since = await rooms.now(ALICE)
    await rooms.ingest(rooms.log.member(ROOM, CAROL, "leave"))
    body = await rooms.sync(ALICE, since=since)
    assert section(body)["summary"] == {
        "m.heroes": [BOB, DAVE],
        "m.joined_member_count": 2,
        "m.invited_member_count": 1,
    }
    since = body["next_batch"]
    await rooms.join(ROOM, DAVE)
    body = await rooms.sync(ALICE, since=since)
    assert section(body)["summary"] == {
        "m.heroes": [BOB, DAVE],
        "m.joined_member_count": 3,
        "m.invited_member_count": 0,
    }


async def test_summary_heroes_are_the_first_five_others(rooms: Rooms) -> None:
    await rooms.room()
    others = [user(n) for n in range(1, 8)]
    for u in others[:3]:
        await rooms.join(ROOM, u)
    await rooms.join(ROOM, ALICE)
    for u in others[3:]:
        await rooms.join(ROOM, u)
    body = await rooms.sync(ALICE)
    summary = section(body)["summary"]
    assert summary["m.heroes"] == [BOB, *others[:4]]
    assert summary["m.joined_member_count"] == 9
    assert summary["m.invited_member_count"] == 0


async def test_summary_heroes_member_events_are_lazy_loaded(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, CAROL)
    await rooms.ingest(rooms.log.member(ROOM, DAVE, "invite", sender=BOB))
    await rooms.join(ROOM, ALICE)
    await rooms.say(ROOM, BOB, "hello")
    filt = {"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}}
    body = await rooms.sync(ALICE, filter=filt)
    assert section(body)["summary"]["m.heroes"] == [BOB, CAROL, DAVE]
    assert member_keys(section(body)["state"]["events"]) == {ALICE, BOB, CAROL, DAVE}


# --- state_after -----------------------------------------------------------------------------


async def test_use_state_after_replaces_state(rooms: Rooms) -> None:
    await joined(rooms)
    body = await rooms.sync(
        ALICE, use_state_after=True, filter={"room": {"timeline": {"limit": 1}}}
    )
    room = section(body)
    assert "state" not in room
    keys = {(e["type"], e["state_key"]) for e in room["state_after"]["events"]}
    # The state at the end of the timeline: including Alice's join, the timeline's event.
    assert keys == ROOM_STATE


async def test_state_after_includes_changes_in_the_timeline(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (new_topic,) = await rooms.ingest(topic(rooms, "fresh"))
    (msg,) = await rooms.say(ROOM, BOB, "see the topic")
    body = await rooms.sync(ALICE, since=since, use_state_after=True)
    room = section(body)
    assert timeline_ids(body, "join", ROOM) == [new_topic, msg]
    assert "state" not in room
    assert [e["event_id"] for e in room["state_after"]["events"]] == [new_topic]
    # Without it, the change is only in the timeline.
    body = await rooms.sync(ALICE, since=since)
    assert state_ids(body, "join", ROOM) == []
    assert "state_after" not in section(body)


async def test_state_after_includes_state_the_timeline_filter_left_out(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    await rooms.ingest(topic(rooms, "one"))
    await rooms.say(ROOM, BOB, "m1")
    (t2,) = await rooms.ingest(topic(rooms, "two"))
    (m2,) = await rooms.say(ROOM, BOB, "m2")
    filt = {"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}}
    body = await rooms.sync(ALICE, since=since, use_state_after=True, filter=filt)
    assert timeline_ids(body, "join", ROOM) == [m2]
    assert [e["event_id"] for e in section(body)["state_after"]["events"]] == [t2]


async def test_unstable_use_state_after(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (new_topic,) = await rooms.ingest(topic(rooms, "fresh"))
    body = await rooms.sync(ALICE, since=since, **{"org.matrix.msc4222.use_state_after": True})
    room = section(body)
    assert "state" not in room and "state_after" not in room
    events = room["org.matrix.msc4222.state_after"]["events"]
    assert [e["event_id"] for e in events] == [new_topic]


async def test_state_after_in_left_rooms(rooms: Rooms) -> None:
    await joined(rooms)
    since = await rooms.now(ALICE)
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    body = await rooms.sync(ALICE, since=since, use_state_after=True)
    room = section(body, "leave")
    assert "state" not in room
    assert timeline_ids(body, "leave", ROOM) == [leave]
    assert leave in [e["event_id"] for e in room["state_after"]["events"]]


async def test_state_after_in_rejected_invites(rooms: Rooms) -> None:
    invite_id, message = remote_invite(ALICE)
    await rooms.ingest_raw(message)
    since = await rooms.now(ALICE)
    await rooms.ingest_raw(
        {
            "type": "retire_invite_event",
            "retire_invite_event": {"EventID": invite_id, "Membership": "leave"},
        }
    )
    body = await rooms.sync(ALICE, since=since, use_state_after=True)
    room = section(body, "leave", REMOTE_ROOM)
    assert "state" not in room
    assert room["state_after"] == {"events": []}


async def test_versions_advertise_msc4222(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/versions")
    assert r.status_code == 200
    assert r.json()["unstable_features"]["org.matrix.msc4222"] is True
