"""The notifier under a MockClock: wake-ups, timeouts, no lost wake-ups, shutdown."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trio_sync.ingest.apply import Applied
from trio_sync.ingest.user_messages import TypingUpdate
from trio_sync.notifier import Notifier
from trio_sync.tokens import StreamToken
from trio_sync.typing_state import TypingState, run_typing_expiry

ALICE, BOB, CAROL = "@alice:x", "@bob:x", "@carol:x"
ROOM = "!room:x"
OTHER = "!other:x"


def make_notifier(*args: Any, **kwargs: Any) -> Notifier:
    """A notifier whose typing positions start at 0, so tokens compare simply."""
    return Notifier(*args, typing=TypingState(start=0), **kwargs)


def event_in(room: str, pdu: int) -> Applied:
    return Applied(token=StreamToken(pdu=pdu), rooms={room})


async def _wait_recording(
    notifier: Notifier, user: str, since: StreamToken, out: list[StreamToken]
) -> None:
    out.append(await notifier.wait_for_update(user, since))


async def test_waiter_behind_returns_at_once() -> None:
    notifier = make_notifier(StreamToken(pdu=10), {ROOM: {ALICE}})
    with trio.fail_after(1):
        token = await notifier.wait_for_update(ALICE, StreamToken(pdu=3))
    assert token == StreamToken(pdu=10)


async def test_only_members_of_the_room_are_woken(autojump_clock: trio.testing.MockClock) -> None:
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE, BOB}})
    since = StreamToken(pdu=1)
    # Streams exist from an earlier sync: register them at the current position.
    for user in (ALICE, BOB, CAROL):
        with trio.move_on_after(0.01):
            await notifier.wait_for_update(user, since)
    got: dict[str, list[StreamToken]] = {ALICE: [], BOB: [], CAROL: []}
    async with trio.open_nursery() as nursery:
        for user in got:
            nursery.start_soon(_wait_recording, notifier, user, since, got[user])
        await trio.testing.wait_all_tasks_blocked()
        assert notifier.waiting() == 3
        await notifier.advance(event_in(ROOM, 2))
        await trio.testing.wait_all_tasks_blocked()
        assert got[ALICE] == [StreamToken(pdu=2)]
        assert got[BOB] == [StreamToken(pdu=2)]
        assert got[CAROL] == []
        assert notifier.waiting() == 1
        nursery.cancel_scope.cancel()
    assert notifier.waiting() == 0


async def test_timeout_is_a_cancel_scope(autojump_clock: trio.testing.MockClock) -> None:
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE}})
    with trio.move_on_after(0.01):
        await notifier.wait_for_update(ALICE, StreamToken(pdu=1))
    start = trio.current_time()
    with trio.move_on_after(30) as scope:
        await notifier.wait_for_update(ALICE, StreamToken(pdu=1))
    assert scope.cancelled_caught
    assert trio.current_time() - start == 30
    assert notifier.waiting() == 0


async def test_membership_change_wakes_the_joining_user_and_members(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE}})
    since = StreamToken(pdu=1)
    for user in (ALICE, BOB):
        with trio.move_on_after(0.01):
            await notifier.wait_for_update(user, since)
    got: dict[str, list[StreamToken]] = {ALICE: [], BOB: []}
    async with trio.open_nursery() as nursery:
        for user in got:
            nursery.start_soon(_wait_recording, notifier, user, since, got[user])
        await trio.testing.wait_all_tasks_blocked()
        await notifier.advance(
            Applied(token=StreamToken(pdu=2), rooms={ROOM}, memberships=[(ROOM, BOB, "join")])
        )
    assert got == {ALICE: [StreamToken(pdu=2)], BOB: [StreamToken(pdu=2)]}
    assert notifier.joined_members(ROOM) == {ALICE, BOB}
    # Bob leaves: he is woken by his own leave, and no longer by the room's events.
    await notifier.advance(
        Applied(token=StreamToken(pdu=3), rooms={ROOM}, memberships=[(ROOM, BOB, "leave")])
    )
    assert notifier.joined_members(ROOM) == {ALICE}
    with trio.move_on_after(5) as scope:
        await notifier.advance(event_in(ROOM, 4))
        await notifier.wait_for_update(BOB, StreamToken(pdu=3))
    assert scope.cancelled_caught


async def test_invite_wakes_the_invitee(autojump_clock: trio.testing.MockClock) -> None:
    notifier = make_notifier(StreamToken(invite=1))
    with trio.move_on_after(0.01):
        await notifier.wait_for_update(CAROL, StreamToken(invite=1))
    got: list[StreamToken] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_recording, notifier, CAROL, StreamToken(invite=1), got)
        await trio.testing.wait_all_tasks_blocked()
        await notifier.advance(Applied(token=StreamToken(invite=2), invited={CAROL}))
    assert got == [StreamToken(invite=2)]


async def test_no_wake_up_lost_between_check_and_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An advance that lands before the waiter parks is seen when it checks."""
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE}})
    with trio.move_on_after(0.01):
        await notifier.wait_for_update(ALICE, StreamToken(pdu=1))
    await notifier.advance(event_in(ROOM, 2))
    with trio.fail_after(1):
        assert await notifier.wait_for_update(ALICE, StreamToken(pdu=1)) == StreamToken(pdu=2)


async def test_unknown_user_with_old_token_is_answered_not_stranded() -> None:
    notifier = make_notifier(StreamToken(pdu=7))
    with trio.fail_after(1):
        await notifier.wait_for_update("@new:x", StreamToken(pdu=5))


async def test_close_answers_every_waiter(autojump_clock: trio.testing.MockClock) -> None:
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE, BOB}})
    for user in (ALICE, BOB):
        with trio.move_on_after(0.01):
            await notifier.wait_for_update(user, StreamToken(pdu=1))
    done: list[StreamToken] = []
    async with trio.open_nursery() as nursery:
        for user in (ALICE, BOB):
            nursery.start_soon(_wait_recording, notifier, user, StreamToken(pdu=1), done)
        await trio.testing.wait_all_tasks_blocked()
        notifier.close()
    assert len(done) == 2
    with trio.fail_after(1):
        await notifier.wait_for_update(ALICE, StreamToken(pdu=1))


async def test_streams_of_users_gone_quiet_are_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(pdu=1), {ROOM: {ALICE, BOB}}, idle_ttl=600)
    for user in (ALICE, BOB):
        with trio.move_on_after(1):
            await notifier.wait_for_update(user, StreamToken(pdu=1))
    assert notifier.streams() == 2
    await trio.sleep(300)
    # Alice keeps syncing; Bob does not.
    with trio.move_on_after(1):
        await notifier.wait_for_update(ALICE, StreamToken(pdu=1))
    await trio.sleep(400)
    await notifier.advance(event_in(ROOM, 2))
    assert notifier.streams() == 1
    # Bob coming back with an old token is answered at once, not stranded.
    with trio.fail_after(1):
        assert await notifier.wait_for_update(BOB, StreamToken(pdu=1)) == StreamToken(pdu=2)
    # A user who is waiting is never dropped, however long the wait.
    got: list[StreamToken] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_recording, notifier, CAROL, StreamToken(pdu=2), got)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(5000)
        await notifier.advance(
            Applied(token=StreamToken(pdu=3), memberships=[(ROOM, CAROL, "join")])
        )
    assert got == [StreamToken(pdu=3)]


# --- the per-user streams -----------------------------------------------------------------


async def test_to_device_wakes_only_the_target_device(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(to_device=1))
    since = StreamToken(to_device=1)
    with trio.move_on_after(0.01):
        await notifier.wait_for_update(BOB, since, "B1")
    done: list[str] = []

    async def wait(device: str) -> None:
        await notifier.wait_for_update(BOB, since, device)
        done.append(device)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "B1")
        nursery.start_soon(wait, "B2")
        await trio.testing.wait_all_tasks_blocked()
        await notifier.advance(Applied(token=StreamToken(to_device=2), devices={(BOB, "B1")}))
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["B1"]
        assert notifier.waiting() == 1
        nursery.cancel_scope.cancel()
    # The device that was sent to is answered at once while its message is not synced.
    with trio.fail_after(1):
        await notifier.wait_for_update(BOB, since, "B1")


async def test_presence_and_key_changes_wake_everyone_sharing_a_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(presence=1), {ROOM: {ALICE, BOB}})
    since = StreamToken(presence=1)
    for user in (ALICE, BOB, CAROL):
        with trio.move_on_after(0.01):
            await notifier.wait_for_update(user, since)
    got: dict[str, list[StreamToken]] = {ALICE: [], BOB: [], CAROL: []}
    async with trio.open_nursery() as nursery:
        for user in got:
            nursery.start_soon(_wait_recording, notifier, user, since, got[user])
        await trio.testing.wait_all_tasks_blocked()
        await notifier.advance(Applied(token=StreamToken(presence=2), shared={ALICE}))
        await trio.testing.wait_all_tasks_blocked()
        assert got[ALICE] and got[BOB] and not got[CAROL]
        nursery.cancel_scope.cancel()
    assert notifier.sharing_a_room(ALICE) == {ALICE, BOB}
    assert notifier.sharing_a_room(CAROL) == {CAROL}


async def test_account_data_wakes_its_user_and_receipts_the_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(), {ROOM: {ALICE, BOB}})
    for user in (ALICE, BOB, CAROL):
        with trio.move_on_after(0.01):
            await notifier.wait_for_update(user, StreamToken())
    await notifier.advance(Applied(token=StreamToken(account_data=1), users={CAROL}))
    await notifier.advance(Applied(token=StreamToken(receipt=1), ephemeral_rooms={ROOM}))
    with trio.fail_after(1):
        await notifier.wait_for_update(CAROL, StreamToken(receipt=1))
        await notifier.wait_for_update(BOB, StreamToken(account_data=1))
    with trio.move_on_after(5) as scope:
        await notifier.wait_for_update(CAROL, StreamToken(account_data=1, receipt=1))
    assert scope.cancelled_caught


async def test_typing_moves_the_token_and_its_expiry_wakes_members(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = make_notifier(StreamToken(), {ROOM: {ALICE, BOB}})
    with trio.move_on_after(0.01):
        await notifier.wait_for_update(BOB, StreamToken())
    typing = TypingUpdate(ROOM, ALICE, True, None)
    await notifier.advance(Applied(typing=[typing]))
    assert notifier.current.typing == 1
    async with trio.open_nursery() as nursery:
        await nursery.start(run_typing_expiry, notifier.typing, notifier.typing_expired)
        start = trio.current_time()
        token = await notifier.wait_for_update(BOB, StreamToken(typing=1))
        assert trio.current_time() - start == 120  # the longest a notice lasts
        assert token.typing == 2
        nursery.cancel_scope.cancel()


async def test_typing_position_of_another_process_answers_at_once() -> None:
    notifier = make_notifier(StreamToken())
    with trio.fail_after(1):
        await notifier.wait_for_update(ALICE, StreamToken(typing=50))


async def test_memberships_quiet_knows_only_what_it_saw() -> None:
    notifier = make_notifier(StreamToken(pdu=10), {ROOM: {ALICE, BOB}, OTHER: {CAROL}})
    # Before this process started nothing is known.
    assert not notifier.memberships_quiet(ALICE, 9)
    assert notifier.memberships_quiet(ALICE, 10)
    await notifier.advance(event_in(ROOM, 11))
    assert notifier.memberships_quiet(ALICE, 10)
    # Someone joins a room Alice is not in: still quiet for her, not for Carol.
    await notifier.advance(
        Applied(token=StreamToken(pdu=12), rooms={OTHER}, memberships=[(OTHER, BOB, "join")])
    )
    assert notifier.memberships_quiet(ALICE, 11)
    assert not notifier.memberships_quiet(CAROL, 11)
    assert not notifier.memberships_quiet(BOB, 11)
    # Bob leaves Alice's room: not quiet for her from before it, quiet from after it.
    await notifier.advance(
        Applied(token=StreamToken(pdu=13), rooms={ROOM}, memberships=[(ROOM, BOB, "leave")])
    )
    assert not notifier.memberships_quiet(ALICE, 12)
    assert notifier.memberships_quiet(ALICE, 13)
