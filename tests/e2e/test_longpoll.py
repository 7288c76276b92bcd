"""Long-polling /sync: woken by the right events only, timeouts, disconnects, shutdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from trio_sync import Config, Service, StreamToken, open_service
from trio_sync.roomlog import RoomLog

from .conftest import (
    ALICE,
    BOB,
    CAROL,
    SERVER,
    event_id,
    not_before,
    rooms_of,
    sync,
    timeline_ids,
    wait_until,
)

ROOM = f"!chat:{SERVER}"


@dataclass
class Poll:
    """The outcome of one background long-poll."""

    body: dict[str, Any] | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def answered(self) -> bool:
        return self.done.is_set()


async def long_poll(http: httpx.AsyncClient, token: str, poll: Poll, **params: Any) -> None:
    try:
        poll.body = await sync(http, token, **params)
    finally:
        poll.done.set()


@pytest.fixture
async def room(service: Service) -> RoomLog:
    """Alice's room with Bob in it; Carol is in no room."""
    log = RoomLog(SERVER)
    await service.ingest([*log.create_room(ROOM, ALICE), log.member(ROOM, BOB, "join")])
    return log


async def current(http: httpx.AsyncClient, token: str) -> str:
    return str((await sync(http, token))["next_batch"])


async def answer_to(
    service: Service, http: httpx.AsyncClient, user: str, messages: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Park a long-poll of ``user`` at its current position, ingest ``messages``, and
    return ``(since, the body that answered the poll)``."""
    token = await service.add_device(user, "D")
    since = await current(http, token)
    poll = Poll()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: long_poll(http, token, poll, since=since, timeout=10000))
            await wait_until(lambda: service.notifier.waiting() == 1)
            assert not poll.answered
            await service.ingest(messages)
    assert poll.body is not None
    return since, poll.body


async def test_long_poll_is_answered_by_an_event_in_the_room(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    message = room.message(ROOM, ALICE, "wake up")
    since, body = await answer_to(service, http, BOB, [message])
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert body["next_batch"] != since
    assert not_before(body["next_batch"], since)


async def test_long_poll_is_answered_by_an_invite(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    invite = room.member(ROOM, CAROL, "invite", sender=ALICE)
    _, body = await answer_to(service, http, CAROL, [invite])
    assert rooms_of(body, "invite") == {ROOM}


async def test_long_poll_of_a_user_outside_the_room_keeps_waiting(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    bob = await service.add_device(BOB, "B")
    carol = await service.add_device(CAROL, "C")
    bob_since = await current(http, bob)
    carol_since = await current(http, carol)
    bob_poll, carol_poll = Poll(), Poll()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: long_poll(http, carol, carol_poll, since=carol_since, timeout=10000)
            )
            nursery.start_soon(
                lambda: long_poll(http, bob, bob_poll, since=bob_since, timeout=10000)
            )
            await wait_until(lambda: service.notifier.waiting() == 2)
            await service.ingest([room.message(ROOM, ALICE, "only for members")])
            await bob_poll.done.wait()
            # Give Carol's request every chance to be (wrongly) answered.
            await trio.sleep(0.2)
            assert not carol_poll.answered
            assert service.notifier.waiting() == 1
            nursery.cancel_scope.cancel()
    assert bob_poll.body is not None and rooms_of(bob_poll.body, "join") == {ROOM}
    assert carol_poll.body is None


async def test_event_in_a_filtered_out_room_does_not_answer_the_long_poll(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = await current(http, token)
    poll = Poll()
    params: dict[str, Any] = {
        "since": since,
        "timeout": 10000,
        "filter": {"room": {"not_rooms": [ROOM]}},
    }
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: long_poll(http, token, poll, **params))
            await wait_until(lambda: service.notifier.waiting() == 1)
            await service.ingest([room.message(ROOM, ALICE, "filtered out")])
            # Woken, found nothing for the filter, and parked again.
            await trio.sleep(0.2)
            await wait_until(lambda: service.notifier.waiting() == 1)
            assert not poll.answered
            nursery.cancel_scope.cancel()


async def test_timeout_zero_returns_at_once(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = await current(http, token)
    with trio.fail_after(5):
        body = await sync(http, token, since=since, timeout=0)
    assert body["next_batch"] == since
    assert not any(body.get("rooms", {}).values())


async def test_no_timeout_means_no_wait(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = await current(http, token)
    with trio.fail_after(5):
        body = await sync(http, token, since=since)
    assert body["next_batch"] == since


async def test_timeout_expiry_returns_empty_response_not_going_backwards(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = await current(http, token)
    start = trio.current_time()
    with trio.fail_after(5):
        body = await sync(http, token, since=since, timeout=300)
    assert trio.current_time() - start >= 0.25
    assert not any(body.get("rooms", {}).values())
    assert body["next_batch"] == since


async def test_since_ahead_of_the_server_never_goes_backwards(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = str(StreamToken(pdu=service.notifier.current.pdu + 100, invite=7))
    with trio.fail_after(5):
        body = await sync(http, token, since=since, timeout=100)
    assert not_before(body["next_batch"], since)


async def test_event_for_someone_else_does_not_end_the_wait_early(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    """Bob is woken when Carol is invited (he is in the room), but the invite is not his.

    The membership event itself is a room event Bob sees, so he is answered with it.
    """
    invite = room.member(ROOM, CAROL, "invite", sender=ALICE)
    _, body = await answer_to(service, http, BOB, [invite])
    assert timeline_ids(body, "join", ROOM) == [event_id(invite)]
    assert rooms_of(body, "invite") == set()


async def test_client_disconnect_cancels_the_wait(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = await current(http, token)
    poll = Poll()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: long_poll(http, token, poll, since=since, timeout=10000))
            await wait_until(lambda: service.notifier.waiting() == 1)
            nursery.cancel_scope.cancel()
        await wait_until(lambda: service.notifier.waiting() == 0)
    assert poll.body is None
    # The server is still fine afterwards.
    assert (await sync(http, token, since=since))["next_batch"] == since


async def test_graceful_shutdown_answers_waiting_long_poll(config: Config) -> None:
    poll = Poll()
    start = trio.current_time()
    with trio.fail_after(5):
        # Leaving this block leaves the service first, then waits for the long-poll task.
        async with (
            httpx.AsyncClient(timeout=30) as client,
            trio.open_nursery() as nursery,
            open_service(config) as service,
        ):
            log = RoomLog(SERVER)
            await service.ingest(log.create_room(ROOM, ALICE))
            token = await service.add_device(ALICE, "A")
            client.base_url = httpx.URL(service.addresses[0])
            since = await current(client, token)
            nursery.start_soon(lambda: long_poll(client, token, poll, since=since, timeout=10000))
            await wait_until(lambda: service.notifier.waiting() == 1)
            assert not poll.answered
    assert trio.current_time() - start < 5
    assert poll.body is not None
    assert not_before(poll.body["next_batch"], since)
