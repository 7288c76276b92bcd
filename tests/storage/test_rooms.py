"""Room queries over ingested data: state at / between positions, memberships, timelines."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from trio_sync.roomlog import RoomLog
from trio_sync.storage import Engine
from trio_sync.storage.rooms import (
    Membership,
    joined_rooms_map,
    memberships_at,
    memberships_now_and_since,
    newest_pages,
    recent_events,
    rooms_with_events,
    state_at,
    state_changes,
    state_delta,
)

from .support import (
    ALICE,
    BOB,
    CAROL,
    OTHER_ROOM,
    ROOM,
    Message,
    event_id_of,
    ingest,
    old_room_event,
    pdu_of,
    state_ids,
)


@dataclass
class History:
    """A log of two interleaved rooms and the state each room has after every message.

    The expected state is worked out from each message's own state delta, and checked
    against the room log's idea of the final state.
    """

    log: RoomLog = field(default_factory=RoomLog)
    messages: list[Message] = field(default_factory=list)
    #: room -> state (event IDs) as of each position; index 0 is before anything.
    states: dict[str, list[set[str]]] = field(
        default_factory=lambda: {ROOM: [set()], OTHER_ROOM: [set()]}
    )

    def add(self, *messages: Message) -> None:
        for message in messages:
            self.messages.append(message)
            body = message["new_room_event"]
            for room, states in self.states.items():
                state = set(states[-1])
                if body["event"]["room_id"] == room:
                    state -= set(body.get("removes_state_event_ids", ()))
                    state |= set(body.get("adds_state_event_ids", ()))
                states.append(state)

    @property
    def last(self) -> int:
        return len(self.messages)


def build_history() -> History:
    h = History()
    log = h.log
    h.add(*log.create_room(ROOM, ALICE, name="n0"))
    h.add(log.message(ROOM, ALICE, "first"))
    h.add(*log.create_room(OTHER_ROOM, BOB, name="other"))
    h.add(log.event(ROOM, ALICE, "m.room.name", {"name": "n1"}, ""))
    h.add(log.member(ROOM, BOB, "invite", sender=ALICE))
    h.add(log.member(ROOM, BOB, "join"))
    h.add(log.message(ROOM, BOB, "hi"))
    h.add(log.event(ROOM, BOB, "m.room.name", {"name": "n2"}, ""))
    h.add(log.event(ROOM, ALICE, "m.room.topic", {"topic": "t1"}, ""))
    h.add(log.member(ROOM, CAROL, "join"))
    h.add(log.message(OTHER_ROOM, BOB, "elsewhere"))
    h.add(log.event(OTHER_ROOM, BOB, "m.room.name", {"name": "other2"}, ""))
    h.add(log.event(ROOM, CAROL, "m.room.name", {"name": "n3"}, ""))
    h.add(log.member(ROOM, BOB, "leave"))
    h.add(log.event(ROOM, ALICE, "m.room.topic", {"topic": "t2"}, ""))
    h.add(log.member(ROOM, BOB, "join"))
    h.add(log.event(ROOM, ALICE, "m.room.power_levels", {"users": {ALICE: 100, BOB: 50}}, ""))
    h.add(log.message(ROOM, BOB, "back"))
    h.add(log.member(ROOM, CAROL, "leave"))
    h.add(log.member(OTHER_ROOM, ALICE, "join"))
    h.add(log.event(ROOM, ALICE, "m.room.name", {"name": "n4"}, ""))
    for room, states in h.states.items():
        assert states[-1] == set(log.current_state(room).values())
    return h


async def ingest_history(engine: Engine, h: History, batches: int = 3) -> None:
    """Ingest the history in a few batches, so state intervals cross batch boundaries."""
    size = -(-len(h.messages) // batches)
    for start in range(0, len(h.messages), size):
        await ingest(engine, h.messages[start : start + size])


@pytest.fixture
async def history(engine: Engine) -> History:
    h = build_history()
    await ingest_history(engine, h)
    return h


async def test_state_at_every_position(engine: Engine, history: History) -> None:
    for room in (ROOM, OTHER_ROOM):
        for pos in range(history.last + 1):
            assert await state_ids(engine, room, pos) == history.states[room][pos], (room, pos)
    # Beyond the last event, the current state holds.
    assert await state_ids(engine, ROOM, history.last + 100) == history.states[ROOM][-1]


async def test_state_at_returns_the_events_clients_receive(
    engine: Engine, history: History
) -> None:
    state = [orjson.loads(s.json) for s in await engine.read(state_at, ROOM, history.last)]
    names = [e["content"]["name"] for e in state if e["type"] == "m.room.name"]
    assert names == ["n4"]
    members = {
        e["state_key"]: e["content"]["membership"] for e in state if e["type"] == "m.room.member"
    }
    assert members == {ALICE: "join", BOB: "join", CAROL: "leave"}


async def test_state_delta_between_any_two_positions(engine: Engine, history: History) -> None:
    states = history.states[ROOM]
    for at in range(history.last + 1):
        for after in range(at + 1):
            delta = {s.event_id for s in await engine.read(state_delta, ROOM, after, at)}
            # Each event becomes state once, at its own position, in a linear history.
            assert delta == states[at] - states[after], (after, at)


async def test_state_changes_read_once_answer_every_delta(engine: Engine, history: History) -> None:
    rooms = [ROOM, OTHER_ROOM]
    for after in range(0, history.last + 1, 3):
        changes = await engine.read(state_changes, rooms, after, history.last)
        for room in rooms:
            for at in range(after, history.last + 1):
                expected = await engine.read(state_delta, room, after, at)
                assert changes.delta(room, at) == expected, (room, after, at)
                lazy = await engine.read(state_delta, room, after, at, members=[ALICE])
                assert changes.delta(room, at, members=[ALICE]) == lazy, (room, after, at)


async def test_state_delta_over_repeated_changes_holds_only_the_last(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE, name="a")
    renames = [log.event(ROOM, ALICE, "m.room.name", {"name": n}, "") for n in "bcd"]
    await ingest(engine, [*setup, *renames])
    n = len(setup)
    delta = await engine.read(state_delta, ROOM, n - 1, n + 3)
    assert [s.event_id for s in delta] == [event_id_of(renames[-1])]
    assert await engine.read(state_delta, ROOM, n + 3, n + 3) == []


def _memberships(h: History, user: str, at: int) -> dict[str, str]:
    """The user's expected membership per room as of ``at``, from the log itself."""
    out = {}
    for room, states in h.states.items():
        for event_id in states[at]:
            message = next(m for m in h.messages if event_id_of(m) == event_id)
            pdu = pdu_of(message)
            if pdu["type"] == "m.room.member" and pdu["state_key"] == user:
                out[room] = pdu["content"]["membership"]
    return out


@pytest.mark.parametrize("user", [ALICE, BOB, CAROL])
async def test_memberships_at_every_position(engine: Engine, history: History, user: str) -> None:
    for pos in range(history.last + 1):
        found = await engine.read(memberships_at, user, pos)
        assert {r: m.membership for r, m in found.items()} == _memberships(history, user, pos)
        for room, m in found.items():
            assert m.room_id == room
            assert m.since <= pos
            assert event_id_of(history.messages[m.since - 1]) == m.event_id


async def test_membership_changes_between_positions(engine: Engine, history: History) -> None:
    bob = [
        (pos, pdu_of(m)["room_id"], pdu_of(m)["content"]["membership"], event_id_of(m))
        for pos, m in enumerate(history.messages, start=1)
        if pdu_of(m)["type"] == "m.room.member" and pdu_of(m)["state_key"] == BOB
    ]
    assert [b[2] for b in bob] == ["join", "invite", "join", "leave", "join"]
    for after in range(history.last + 1):
        for upto in range(after, history.last + 1):
            current, found = await engine.read(memberships_now_and_since, BOB, after, upto)
            assert current == await engine.read(memberships_at, BOB, upto)
            assert found == [
                Membership(room, membership, event_id, pos)
                for pos, room, membership, event_id in bob
                if after < pos <= upto
            ], (after, upto)


async def test_joined_rooms_map_holds_current_joins_only(engine: Engine, history: History) -> None:
    assert await engine.read(joined_rooms_map) == {
        ROOM: {ALICE, BOB},
        OTHER_ROOM: {BOB, ALICE},
    }


async def test_rooms_with_events_in_a_range(engine: Engine, history: History) -> None:
    rooms_at = [pdu_of(m)["room_id"] for m in history.messages]
    for after, upto in [(0, history.last), (6, 11), (11, 12), (13, 16), (5, 5)]:
        expected = set(rooms_at[after:upto])
        found = await engine.read(rooms_with_events, [ROOM, OTHER_ROOM], after, upto)
        assert found == expected, (after, upto)
        assert await engine.read(rooms_with_events, [ROOM], after, upto) == expected & {ROOM}
        assert await engine.read(rooms_with_events, [], after, upto) == set()


async def test_recent_events_are_the_newest_in_order(engine: Engine, history: History) -> None:
    in_room = [
        (pos, event_id_of(m))
        for pos, m in enumerate(history.messages, start=1)
        if pdu_of(m)["room_id"] == ROOM
    ]
    for limit in (1, 3, 100):
        found = await engine.read(recent_events, ROOM, 0, history.last, limit)
        assert [(e.pos, e.event_id) for e in found] == in_room[-limit:]
    found = await engine.read(recent_events, ROOM, 10, 20, 100)
    assert [(e.pos, e.event_id) for e in found] == [(p, e) for p, e in in_room if 10 < p <= 20]
    assert all(e.depth == pdu_of(history.messages[e.pos - 1])["depth"] for e in found)


async def test_newest_pages_of_several_rooms_are_each_newest_first(
    engine: Engine, history: History
) -> None:
    """Every room's page is its own newest events in the range, newest first, however
    the rows of the rooms come back from the one statement."""
    by_room: dict[str, list[tuple[int, str]]] = {ROOM: [], OTHER_ROOM: []}
    for pos, m in enumerate(history.messages, start=1):
        by_room[pdu_of(m)["room_id"]].append((pos, event_id_of(m)))
    for after, upto, limit in [(0, history.last, 3), (0, history.last, 100), (6, 14, 2)]:
        pages = await engine.read(newest_pages, [OTHER_ROOM, ROOM], after, upto, limit)
        assert list(pages) == [OTHER_ROOM, ROOM]
        for room, page in pages.items():
            in_range = [(p, e) for p, e in by_room[room] if after < p <= upto]
            assert [(e.pos, e.event_id) for e in page] == in_range[::-1][:limit], room
    assert await engine.read(newest_pages, [ROOM], 5, 5, 3) == {ROOM: []}


async def test_backfilled_events_are_left_out_of_timelines(engine: Engine) -> None:
    log = RoomLog()
    setup = log.create_room(ROOM, ALICE)
    live = log.message(ROOM, ALICE, "live")
    old = old_room_event(pdu_of(log.message(ROOM, ALICE, "old")))
    await ingest(engine, [*setup, live, old])
    found = await engine.read(recent_events, ROOM, 0, len(setup) + 2, 1)
    assert [e.event_id for e in found] == [event_id_of(live)]
