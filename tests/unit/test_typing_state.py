"""The in-memory typing state under a MockClock: positions, views, expiry and its task."""

from __future__ import annotations

import trio
import trio.testing

from trio_sync.ingest.user_messages import TypingUpdate
from trio_sync.typing_state import MAX_TYPING_SECONDS, TypingState, run_typing_expiry

ROOM, OTHER = "!room:x", "!other:x"
ALICE, BOB = "@alice:x", "@bob:x"
NOW_MS = 1_000_000


def start(user: str, seconds: float, room: str = ROOM) -> TypingUpdate:
    return TypingUpdate(room, user, True, NOW_MS + int(seconds * 1000))


def stop(user: str, room: str = ROOM) -> TypingUpdate:
    return TypingUpdate(room, user, False, None)


async def test_changes_move_the_position_once_per_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = TypingState(start=100)
    assert state.apply([start(ALICE, 10), start(BOB, 10), start(ALICE, 5, OTHER)], NOW_MS) == {
        ROOM,
        OTHER,
    }
    assert state.position == 102
    assert state.view[ROOM].users == (ALICE, BOB)
    assert {state.view[ROOM].position, state.view[OTHER].position} == {101, 102}
    # Renewing a timeout is not a change; stopping someone not typing is not either.
    before = state.view
    assert state.apply([start(ALICE, 20), stop(BOB, OTHER)], NOW_MS) == set()
    assert state.position == 102 and state.view is before
    assert state.apply([stop(BOB)], NOW_MS) == {ROOM}
    assert state.view[ROOM].users == (ALICE,)
    # An old view is never changed.
    assert before[ROOM].users == (ALICE, BOB)


async def test_expired_or_absurd_timeouts(autojump_clock: trio.testing.MockClock) -> None:
    state = TypingState(start=0)
    assert state.apply([start(ALICE, -1)], NOW_MS) == set()
    state.apply([TypingUpdate(ROOM, BOB, True, None)], NOW_MS)
    assert state.next_deadline() == trio.current_time() + MAX_TYPING_SECONDS
    state.apply([start(ALICE, 10**9)], NOW_MS)
    assert state.next_deadline() == trio.current_time() + MAX_TYPING_SECONDS


async def test_expiry_task_reports_rooms_at_their_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = TypingState(start=0)
    reported: list[tuple[float, set[str]]] = []

    async def on_expired(rooms: set[str]) -> None:
        reported.append((trio.current_time(), rooms))

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_typing_expiry, state, on_expired)
        state.apply([start(ALICE, 30)], NOW_MS)
        await trio.sleep(1)
        # An earlier deadline set while the task waits for a later one.
        state.apply([start(BOB, 5, OTHER)], NOW_MS)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert reported == [(t0 + 6, {OTHER}), (t0 + 30, {ROOM})]
    assert state.view[ROOM].users == () and state.view[OTHER].users == ()
    assert state.position == 4


async def test_positions_of_another_process_are_stale() -> None:
    state = TypingState(start=1000)
    assert state.is_stale(999) and state.is_stale(1001)
    assert not state.is_stale(1000)
    assert TypingState().base > 1_600_000_000_000  # wall-clock milliseconds
