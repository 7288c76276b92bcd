"""Applying room-server log messages to storage (``apply_batch``), on both backends."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from trio_sync.ingest import apply_batch
from trio_sync.ingest.runner import parse_items, source_offset
from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, Engine
from trio_sync.storage.rooms import (
    RESET_EVENT_ID,
    joined_rooms_map,
    recent_events,
    rooms_with_events,
)

from .support import (
    ALICE,
    BOB,
    CAROL,
    OTHER_ROOM,
    ROOM,
    Message,
    client_event,
    event_id_of,
    ingest,
    new_invite_event,
    old_room_event,
    pdu_of,
    purge_room,
    query,
    redacted_event,
    redaction,
    rejects,
    retire_invite_event,
    snapshot,
    state_ids,
    stored_events,
    stream_position,
    with_body,
)

# --- positions and duplicates ---------------------------------------------------------


async def test_positions_follow_log_order_across_batches(engine: Engine) -> None:
    log = RoomLog()
    first = log.create_room(ROOM, ALICE, name="Room")
    second = [log.message(ROOM, ALICE, f"hello {i}") for i in range(5)]

    applied = await ingest(engine, first)
    assert (applied.accepted, applied.duplicates, applied.rejected) == (len(first), 0, 0)
    assert applied.token.pdu == len(first)
    assert applied.rooms == {ROOM}

    applied = await ingest(engine, second)
    assert applied.token.pdu == len(first) + len(second)

    ids = [event_id_of(m) for m in first + second]
    assert await stored_events(engine) == list(enumerate(ids, start=1))
    assert await stream_position(engine, "pdu") == len(ids)


async def test_redelivered_event_keeps_its_first_position(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    hello = log.message(ROOM, ALICE, "hello")
    await ingest(engine, [*setup, hello])
    before = await client_event(engine, event_id_of(hello))

    later = log.message(ROOM, ALICE, "later")
    applied = await ingest(engine, [hello, later, hello])
    assert (applied.accepted, applied.duplicates) == (1, 2)

    n = len(setup)
    events = await stored_events(engine)
    assert events[-2:] == [(n + 1, event_id_of(hello)), (n + 2, event_id_of(later))]
    assert len(events) == n + 2
    assert await stream_position(engine, "pdu") == n + 2
    assert await client_event(engine, event_id_of(hello)) == before


async def test_duplicate_within_one_batch_is_stored_once(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    applied = await ingest(engine, [*setup, setup[-1], *setup])
    assert (applied.accepted, applied.duplicates) == (len(setup), len(setup) + 1)
    assert [e for _, e in await stored_events(engine)] == [event_id_of(m) for m in setup]


async def test_redelivered_state_event_does_not_disturb_room_state(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="One")
    rename = log.event(ROOM, ALICE, "m.room.name", {"name": "Two"}, "")
    await ingest(engine, [*setup, rename])
    state_before = await snapshot(engine)

    applied = await ingest(engine, [setup[-1], rename])  # the old name, then the new again
    assert applied.duplicates == 2
    assert await snapshot(engine) == state_before


# --- rejected messages ----------------------------------------------------------------


def _without(message: Message, key: str) -> Message:
    out = copy.deepcopy(message)
    del pdu_of(out)[key]
    return out


def _with_room(message: Message, room_id: str) -> Message:
    out = copy.deepcopy(message)
    pdu_of(out)["room_id"] = room_id
    return out


async def test_malformed_messages_are_recorded_and_the_rest_of_the_batch_applied(
    engine: Engine,
) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    good = [log.message(ROOM, ALICE, f"good {i}") for i in range(6)]
    bad: list[tuple[bytes, str]] = [
        (b'{"type": "new_room_event", "new_room_event": {"ev\xff\xfe', "not JSON"),
        (orjson.dumps(_without(log.message(ROOM, ALICE, "x"), "sender")), "'sender'"),
        (orjson.dumps({"type": "new_telepathy_event", "new_telepathy_event": {}}), "unknown"),
        (orjson.dumps(_with_room(log.message(ROOM, ALICE, "y"), "general")), "'room_id'"),
        (b"[1, 2, 3]", "JSON object"),
    ]
    await ingest(engine, setup)

    batch: list[Message | bytes] = [good[0]]
    for (raw, _), after in zip(bad, good[1:], strict=True):
        batch += [raw, after]
    offsets = [1000 + 100 * i for i in range(len(batch))]
    applied = await ingest(engine, batch, source="file:/log", offsets=offsets, end_offset=9999)

    assert (applied.accepted, applied.rejected) == (len(good), len(bad))
    n = len(setup)
    assert (await stored_events(engine))[n:] == [
        (n + i, event_id_of(m)) for i, m in enumerate(good, start=1)
    ]
    recorded = await rejects(engine)
    assert [(i, s, o, raw) for i, s, o, _, raw in recorded] == [
        (k, "file:/log", offsets[2 * k - 1], raw) for k, (raw, _) in enumerate(bad, start=1)
    ]
    for (_, _, _, reason, _), (_, expected) in zip(recorded, bad, strict=True):
        assert expected in reason


async def test_rejects_of_later_batches_get_new_ids(engine: Engine) -> None:
    for batch in range(3):
        applied = await ingest(engine, [b"nope", f"nope {batch}".encode()])
        assert applied.rejected == 2
    assert [(i, raw) for i, _, _, _, raw in await rejects(engine)] == [
        (1, b"nope"),
        (2, b"nope 0"),
        (3, b"nope"),
        (4, b"nope 1"),
        (5, b"nope"),
        (6, b"nope 2"),
    ]


def _adds_unknown_event(log: RoomLog) -> Message:
    # Also supplies a valid extra state event: that must not be stored either.
    extra = pdu_of(log.event(OTHER_ROOM, ALICE, "m.room.create", {}, ""))
    extra["room_id"] = ROOM
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    return with_body(
        topic,
        adds_state_event_ids=[event_id_of(topic), extra["_event_id"], "$unknown"],
        AddStateEvents=[extra],
    )


def _adds_event_of_another_room(log: RoomLog) -> Message:
    other = log.current_state(OTHER_ROOM)[("m.room.create", "")]
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    return with_body(topic, adds_state_event_ids=[event_id_of(topic), other])


def _adds_a_message_as_state(log: RoomLog, hello_id: str) -> Message:
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    return with_body(topic, adds_state_event_ids=[event_id_of(topic), hello_id])


def _adds_two_names(log: RoomLog) -> Message:
    one = log.event(ROOM, ALICE, "m.room.name", {"name": "one"}, "")
    two = pdu_of(log.event(ROOM, ALICE, "m.room.name", {"name": "two"}, ""))
    return with_body(
        one, adds_state_event_ids=[event_id_of(one), two["_event_id"]], AddStateEvents=[two]
    )


def _redacts_unknown_event(log: RoomLog) -> Message:
    return redacted_event("$unknown", pdu_of(redaction(log, ROOM, ALICE, "$unknown")))


def _redacts_from_another_room(log: RoomLog, hello_id: str) -> Message:
    return redacted_event(hello_id, pdu_of(redaction(log, OTHER_ROOM, ALICE, hello_id)))


def _retires_unknown_invite(log: RoomLog) -> Message:
    return retire_invite_event("$unknown", "join", retired_by="$whatever")


INCONSISTENT: dict[str, Callable[[RoomLog, str], Message]] = {
    "adds unknown event": lambda log, _: _adds_unknown_event(log),
    "adds event of another room": lambda log, _: _adds_event_of_another_room(log),
    "adds a non-state event": _adds_a_message_as_state,
    "adds two events for one key": lambda log, _: _adds_two_names(log),
    "redacts unknown event": lambda log, _: _redacts_unknown_event(log),
    "redaction from another room": _redacts_from_another_room,
    "retires unknown invite": lambda log, _: _retires_unknown_invite(log),
}


@pytest.mark.parametrize("case", INCONSISTENT)
async def test_inconsistent_message_is_rejected_with_nothing_of_it_written(
    engine: Engine, case: str
) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Room") + log.create_room(OTHER_ROOM, ALICE)
    hello = log.message(ROOM, ALICE, "hello")
    invite = log.member(ROOM, BOB, "invite", sender=ALICE)
    await ingest(engine, [*setup, hello, invite])
    before = await snapshot(engine)
    events_before = await stored_events(engine)

    bad = INCONSISTENT[case](log, event_id_of(hello))
    after = log.message(ROOM, ALICE, "after")
    applied = await ingest(engine, [bad, after], offsets=[10, 20])

    assert (applied.rejected, applied.accepted) == (1, 1)
    recorded = await rejects(engine)
    assert [(o, raw) for _, _, o, _, raw in recorded] == [(10, orjson.dumps(bad))]
    # Only the message after it was written, at the very next position.
    n = len(events_before)
    assert await stored_events(engine) == [*events_before, (n + 1, event_id_of(after))]
    now = await snapshot(engine)
    now["events"] = [row for row in now["events"] if row[1] != event_id_of(after)]
    now["streams"] = [(s, p - 1 if s == "pdu" else p) for s, p in now["streams"]]
    assert now == before


# --- room state -----------------------------------------------------------------------


async def test_rewrites_state_replaces_the_whole_state(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Old")
    join = log.member(ROOM, BOB, "join")
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    await ingest(engine, [*setup, join, topic])
    old_state = set(log.current_state(ROOM).values())
    create_id = log.current_state(ROOM)[("m.room.create", "")]
    alice_id = log.current_state(ROOM)[("m.room.member", ALICE)]

    reset = log.event(ROOM, ALICE, "m.room.name", {"name": "New"}, "")
    reset = with_body(
        reset,
        rewrites_state=True,
        adds_state_event_ids=[create_id, alice_id, event_id_of(reset)],
        removes_state_event_ids=[],
    )
    applied = await ingest(engine, [reset])
    at = applied.token.pdu

    assert await state_ids(engine, ROOM, at - 1) == old_state
    assert await state_ids(engine, ROOM, at) == {create_id, alice_id, event_id_of(reset)}
    open_rows = await query(
        engine,
        "SELECT event_id, state_key, membership FROM room_state "
        "WHERE room_id = $1 AND removed_at > $2",
        ROOM,
        at,
    )
    events = {r[0] for r in open_rows if r[0] != RESET_EVENT_ID}
    assert events == {create_id, alice_id, event_id_of(reset)}
    # Bob's membership went without a replacement: a reset leaves him out of the room.
    assert [(r[1], r[2]) for r in open_rows if r[0] == RESET_EVENT_ID] == [(BOB, "leave")]
    assert (await engine.read(joined_rooms_map))[ROOM] == {ALICE}


async def test_rewrites_state_leaves_other_rooms_alone(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE) + log.create_room(OTHER_ROOM, BOB, name="Other")
    await ingest(engine, setup)
    other_state = set(log.current_state(OTHER_ROOM).values())
    reset = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    applied = await ingest(engine, [with_body(reset, rewrites_state=True)])
    assert await state_ids(engine, OTHER_ROOM, applied.token.pdu) == other_state
    assert await state_ids(engine, ROOM, applied.token.pdu) == {event_id_of(reset)}


async def test_removes_state_event_ids_drops_state_without_replacement(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "t"}, "")
    await ingest(engine, [*setup, topic])
    with_topic = set(log.current_state(ROOM).values())

    hello = with_body(
        log.message(ROOM, ALICE, "topic gone"), removes_state_event_ids=[event_id_of(topic)]
    )
    applied = await ingest(engine, [hello])
    at = applied.token.pdu
    assert await state_ids(engine, ROOM, at - 1) == with_topic
    assert await state_ids(engine, ROOM, at) == with_topic - {event_id_of(topic)}


async def test_state_supplied_with_a_join_over_federation(engine: Engine) -> None:
    remote = RoomLog("remote.example")
    history = remote.create_room(ROOM, "@zed:remote.example", name="Remote")
    join = remote.member(ROOM, ALICE, "join")
    extras = [pdu_of(m) for m in history]
    ids = [event_id_of(m) for m in history]
    message = with_body(join, adds_state_event_ids=[*ids, event_id_of(join)], AddStateEvents=extras)

    applied = await ingest(engine, [message])
    assert applied.accepted == 1
    # The supplied events are stored first (so they can be state), the join last.
    assert await stored_events(engine) == list(enumerate([*ids, event_id_of(join)], start=1))
    at = applied.token.pdu
    assert await state_ids(engine, ROOM, at) == set(remote.current_state(ROOM).values())
    # Only the join itself is part of the timeline.
    timeline = await engine.read(recent_events, ROOM, 0, at, 50)
    assert [e.event_id for e in timeline] == [event_id_of(join)]
    assert (await engine.read(joined_rooms_map))[ROOM] == {"@zed:remote.example", ALICE}


async def test_replacing_state_event_carries_prev_content(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="One")
    first_name = setup[-1]
    rename = log.event(ROOM, BOB, "m.room.name", {"name": "Two"}, "")
    hello = log.message(ROOM, ALICE, "hi")
    await ingest(engine, [*setup, rename, hello])

    assert "replaces_state" not in (await client_event(engine, event_id_of(first_name))).get(
        "unsigned", {}
    )
    unsigned = (await client_event(engine, event_id_of(rename)))["unsigned"]
    assert unsigned["replaces_state"] == event_id_of(first_name)
    assert unsigned["prev_content"] == {"name": "One"}
    # Only the spec's client keys: no prev_sender.
    assert set(unsigned) == {"replaces_state", "prev_content"}
    assert "unsigned" not in await client_event(engine, event_id_of(hello))


async def test_membership_change_carries_previous_membership(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    invite = log.member(ROOM, BOB, "invite", sender=ALICE)
    join = log.member(ROOM, BOB, "join", displayname="Bob")
    await ingest(engine, [*setup, invite, join])
    unsigned = (await client_event(engine, event_id_of(join)))["unsigned"]
    assert unsigned["replaces_state"] == event_id_of(invite)
    assert unsigned["prev_content"] == {"membership": "invite"}


async def test_applied_reports_membership_changes_in_log_order(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    await ingest(engine, setup)
    changes = [
        log.member(ROOM, BOB, "invite", sender=ALICE),
        log.message(ROOM, ALICE, "hi"),
        log.member(ROOM, BOB, "join"),
        log.member(ROOM, CAROL, "join"),
        log.member(ROOM, BOB, "leave"),
    ]
    applied = await ingest(engine, changes)
    assert applied.memberships == [
        (ROOM, BOB, "invite"),
        (ROOM, BOB, "join"),
        (ROOM, CAROL, "join"),
        (ROOM, BOB, "leave"),
    ]
    assert (await engine.read(joined_rooms_map))[ROOM] == {ALICE, CAROL}


# --- invites --------------------------------------------------------------------------


async def _invites(engine: Engine) -> list[tuple[Any, ...]]:
    return await query(
        engine,
        "SELECT pos, event_id, room_id, user_id, retired_at, retired_membership, "
        "retired_by_event_id FROM invites ORDER BY pos",
    )


async def _invite_json(engine: Engine, event_id: str) -> dict[str, Any]:
    rows = await query(engine, "SELECT event_json FROM invites WHERE event_id = $1", event_id)
    event: dict[str, Any] = orjson.loads(rows[0][0])
    return event


@pytest.mark.parametrize("federation_first", [False, True])
async def test_invite_delivered_twice_is_one_invite(engine: Engine, federation_first: bool) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Room")
    invite = log.member(ROOM, BOB, "invite", sender=ALICE)
    federated = new_invite_event(copy.deepcopy(pdu_of(invite)))
    first, second = (
        ([federated], [*setup, invite])
        if federation_first
        else (
            [*setup, invite],
            [federated],
        )
    )

    applied = await ingest(engine, first)
    assert applied.invited == {BOB}
    applied = await ingest(engine, second)
    assert applied.invited == set()
    if not federation_first:
        assert applied.duplicates == 1

    assert await _invites(engine) == [(1, event_id_of(invite), ROOM, BOB, None, None, None)]
    assert await stream_position(engine, "invite") == 1
    event = await _invite_json(engine, event_id_of(invite))
    assert (event["type"], event["state_key"], event["content"]) == (
        "m.room.member",
        BOB,
        {"membership": "invite"},
    )


async def test_invite_carries_the_rooms_stripped_state(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Room")
    topic = log.event(ROOM, ALICE, "m.room.topic", {"topic": "chat"}, "")
    invite = log.member(ROOM, BOB, "invite", sender=ALICE)
    await ingest(engine, [*setup, topic, invite])

    stripped = (await _invite_json(engine, event_id_of(invite)))["unsigned"]["invite_room_state"]
    by_type = {s["type"]: s for s in stripped}
    assert set(by_type) == {"m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic"}
    assert by_type["m.room.name"] == {
        "content": {"name": "Room"},
        "sender": ALICE,
        "state_key": "",
        "type": "m.room.name",
    }


async def test_federated_invite_keeps_the_state_it_came_with(engine: Engine) -> None:
    remote = RoomLog("remote.example")
    remote.create_room(ROOM, "@zed:remote.example", name="Remote")
    pdu = copy.deepcopy(pdu_of(remote.member(ROOM, BOB, "invite", sender="@zed:remote.example")))
    given = [
        {
            "type": "m.room.name",
            "state_key": "",
            "sender": "@zed:remote.example",
            "content": {"name": "Remote"},
        }
    ]
    pdu["unsigned"] = {"invite_room_state": given, "age": 10}
    await ingest(engine, [new_invite_event(pdu)])
    event = await _invite_json(engine, pdu["_event_id"])
    # The stripped state is kept for invite_state; the PDU's age is not a stored field.
    assert event["unsigned"] == {"invite_room_state": given}
    assert await stored_events(engine) == []  # an invite is not a room event here


@pytest.mark.parametrize("membership", ["join", "leave", "ban"])
async def test_later_membership_retires_the_invite(engine: Engine, membership: str) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE) + log.create_room(OTHER_ROOM, ALICE)
    invite = log.member(ROOM, BOB, "invite", sender=ALICE)
    other_invite = log.member(OTHER_ROOM, BOB, "invite", sender=ALICE)
    await ingest(engine, [*setup, invite, other_invite])

    sender = ALICE if membership == "ban" else BOB
    change = log.member(ROOM, BOB, membership, sender=sender)
    applied = await ingest(engine, [change])
    assert applied.invited == {BOB}
    assert applied.token.invite == 3
    assert await _invites(engine) == [
        (1, event_id_of(invite), ROOM, BOB, 3, membership, event_id_of(change)),
        (2, event_id_of(other_invite), OTHER_ROOM, BOB, None, None, None),
    ]


async def test_retire_invite_event_retires_a_federated_invite(engine: Engine) -> None:
    remote = RoomLog("remote.example")
    remote.create_room(ROOM, "@zed:remote.example")
    pdu = pdu_of(remote.member(ROOM, BOB, "invite", sender="@zed:remote.example"))
    await ingest(engine, [new_invite_event(pdu)])

    applied = await ingest(engine, [retire_invite_event(pdu["_event_id"], "leave", "$rejection")])
    assert (applied.accepted, applied.invited) == (1, {BOB})
    assert await _invites(engine) == [(1, pdu["_event_id"], ROOM, BOB, 2, "leave", "$rejection")]
    # Retiring again changes nothing and uses no position.
    applied = await ingest(engine, [retire_invite_event(pdu["_event_id"], "leave", "$again")])
    assert applied.rejected == 0
    assert await stream_position(engine, "invite") == 2
    assert (await _invites(engine))[0][4:] == (2, "leave", "$rejection")


async def test_a_new_invite_after_a_retired_one_is_active(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    first = log.member(ROOM, BOB, "invite", sender=ALICE)
    leave = log.member(ROOM, BOB, "leave")
    second = log.member(ROOM, BOB, "invite", sender=ALICE)
    await ingest(engine, [*setup, first, leave, second])
    assert await _invites(engine) == [
        (1, event_id_of(first), ROOM, BOB, 2, "leave", event_id_of(leave)),
        (3, event_id_of(second), ROOM, BOB, None, None, None),
    ]


# --- backfill, redaction, purge -------------------------------------------------------


async def test_old_room_event_is_stored_but_not_synced(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    await ingest(engine, setup)
    state = set(log.current_state(ROOM).values())
    backfilled_message = pdu_of(log.message(ROOM, ALICE, "old"))
    backfilled_state = pdu_of(log.event(ROOM, ALICE, "m.room.topic", {"topic": "old"}, ""))

    applied = await ingest(
        engine, [old_room_event(backfilled_message), old_room_event(backfilled_state)]
    )
    assert applied.accepted == 2
    n = len(setup)
    assert (await stored_events(engine))[n:] == [
        (n + 1, backfilled_message["_event_id"]),
        (n + 2, backfilled_state["_event_id"]),
    ]
    assert await engine.read(recent_events, ROOM, n, n + 2, 10) == []
    assert await engine.read(rooms_with_events, [ROOM], n, n + 2) == set()
    assert await state_ids(engine, ROOM, n + 2) == state

    applied = await ingest(engine, [old_room_event(backfilled_message)])
    assert (applied.accepted, applied.duplicates) == (0, 1)


async def test_redaction_strips_content_and_records_the_reason(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    secret = log.message(ROOM, BOB, "my password is hunter2")
    redact = redaction(log, ROOM, ALICE, event_id_of(secret))
    await ingest(engine, [*setup, secret, redact])
    pos = dict((e, p) for p, e in await stored_events(engine))[event_id_of(secret)]

    applied = await ingest(engine, [redacted_event(event_id_of(secret), pdu_of(redact))])
    assert applied.accepted == 1

    event = await client_event(engine, event_id_of(secret))
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert (because["event_id"], because["type"], because["redacts"]) == (
        event_id_of(redact),
        "m.room.redaction",
        event_id_of(secret),
    )
    rows = await query(
        engine,
        "SELECT pos, pdu_json, redacted_because FROM events WHERE event_id = $1",
        event_id_of(secret),
    )
    assert rows[0][0] == pos  # keeps its place in the timeline
    assert b"hunter2" not in rows[0][1].encode()
    assert orjson.loads(rows[0][2])["event_id"] == event_id_of(redact)
    timeline = await engine.read(recent_events, ROOM, 0, applied.token.pdu, 50)
    assert all("hunter2" not in e.json for e in timeline)


async def test_redacted_state_is_redacted_in_room_state(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="Rude name")
    join = log.member(ROOM, BOB, "join", displayname="Bobby")
    await ingest(engine, [*setup, join])
    name_id, join_id = event_id_of(setup[-1]), event_id_of(join)
    messages = []
    for target in (name_id, join_id):
        redact = redaction(log, ROOM, ALICE, target)
        messages += [redact, redacted_event(target, pdu_of(redact))]
    applied = await ingest(engine, messages)

    from trio_sync.storage.rooms import state_at

    state = {
        s.event_id: orjson.loads(s.json)
        for s in await engine.read(state_at, ROOM, applied.token.pdu)
    }
    assert state[name_id]["content"] == {}
    assert state[join_id]["content"] == {"membership": "join"}  # membership survives


async def test_purge_room_removes_the_room_and_nothing_else(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE) + log.create_room(OTHER_ROOM, ALICE, name="Other")
    invites = [
        log.member(ROOM, BOB, "invite", sender=ALICE),
        log.member(OTHER_ROOM, BOB, "invite", sender=ALICE),
    ]
    await ingest(engine, [*setup, *invites])
    other_before = [
        row for row in await query(engine, "SELECT * FROM events") if row[2] == OTHER_ROOM
    ]
    last = await stream_position(engine, "pdu")

    applied = await ingest(engine, [purge_room(ROOM)])
    assert applied.purged == {ROOM}
    for table in ("events", "room_state", "invites"):
        rooms = {r[0] for r in await query(engine, f"SELECT room_id FROM {table}")}
        assert rooms == {OTHER_ROOM}, table
    assert [r for r in await query(engine, "SELECT * FROM events")] == other_before
    assert ROOM not in await engine.read(joined_rooms_map)

    # Positions are never reused, even though the room's were freed.
    hello = log.message(OTHER_ROOM, ALICE, "still here")
    applied = await ingest(engine, [hello])
    assert (await stored_events(engine))[-1] == (last + 1, event_id_of(hello))


async def test_peek_messages_are_accepted_and_store_nothing(engine: Engine) -> None:
    before = await snapshot(engine)
    applied = await ingest(
        engine, [{"type": "new_peek", "new_peek": {"RoomID": ROOM, "UserID": ALICE}}]
    )
    assert (applied.accepted, applied.rejected) == (1, 0)
    assert await snapshot(engine) == before


# --- consumed offsets -----------------------------------------------------------------


async def test_offset_is_committed_with_its_batch(engine: Engine) -> None:
    log = RoomLog()
    await ingest(engine, log.create_room(ROOM, ALICE), source="a", end_offset=500)
    await ingest(engine, [log.message(ROOM, ALICE, "x")], source="b", end_offset=70)
    await ingest(engine, [log.message(ROOM, ALICE, "y")], source="a", end_offset=800)
    await ingest(engine, [log.message(ROOM, ALICE, "z")], source="a")  # no offset: unchanged
    assert await engine.read(source_offset, "a") == 800
    assert await engine.read(source_offset, "b") == 70
    assert await engine.read(source_offset, "never") == 0


async def test_failed_batch_commits_neither_data_nor_offset(engine: Engine) -> None:
    log = RoomLog()
    await ingest(engine, log.create_room(ROOM, ALICE), source="f", end_offset=100)
    before = await snapshot(engine)
    batch = [orjson.dumps(log.message(ROOM, ALICE, f"m{i}")) for i in range(5)] + [b"junk"]

    async def apply_then_fail(conn: Conn) -> None:
        await apply_batch(conn, "f", parse_items(batch, [None] * len(batch)), 999)
        raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        await engine.write(apply_then_fail)
    assert await snapshot(engine) == before
    assert await engine.read(source_offset, "f") == 100
    assert await rejects(engine) == []


async def test_room_version_12_room_ids_have_no_server_part(engine: Engine) -> None:
    log = RoomLog()
    room = "!Zy3hQmTq9YdKpL0vX2bN7cR8sW4eJ6uA1fG5iO"
    messages = [*log.create_room(room, ALICE), log.message(room, ALICE, "hello")]
    applied = await ingest(engine, messages)
    assert applied.rejected == 0
    assert applied.accepted == len(messages)
    assert room in applied.rooms
