"""Parking only when there is nothing to answer yet, and leaving a parked poll.

A request whose answer is ready never enters the park hook (where the HTTP layer keeps its
disconnect watcher); a parked request whose client goes away is cancelled and forgotten.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import trio

from trio_sync import Service
from trio_sync.roomlog import RoomLog
from trio_sync.sync.request import SyncRequest
from trio_sync.tokens import StreamToken

from .conftest import ALICE, BOB, SERVER, SYNC_PATH, event_id, sync, timeline_ids, wait_until

ROOM = f"!park:{SERVER}"
OTHER_ROOM = f"!other:{SERVER}"


@pytest.fixture
async def room(service: Service) -> RoomLog:
    log = RoomLog(SERVER)
    await service.ingest([*log.create_room(ROOM, ALICE), log.member(ROOM, BOB, "join")])
    return log


class Recorder:
    """A park hook that counts how often a request parked."""

    def __init__(self) -> None:
        self.parked = 0

    async def __call__(self) -> None:
        self.parked += 1
        await trio.sleep_forever()


async def _served_later(
    service: Service, http: httpx.AsyncClient, token: str, since: str, message: dict[str, Any]
) -> None:
    """``message``, ingested now, is the one event a sync from ``since`` serves."""
    await service.ingest([message])
    body = await sync(http, token, since=since, timeout=10000)
    room_id = message["new_room_event"]["event"]["room_id"]
    assert timeline_ids(body, "join", room_id) == [event_id(message)]


async def test_ready_answers_never_park(service: Service, room: RoomLog) -> None:
    token = await service.add_device(BOB, "B")
    device = await service.auth.authenticate(token)
    park = Recorder()
    first = await service.sync.sync(device, SyncRequest(), park)
    since = first.next_batch
    # Nothing new and timeout=0: answered at once, empty.
    empty = await service.sync.sync(device, SyncRequest(since=since, timeout_ms=0), park)
    assert empty.is_empty() and empty.next_batch == since
    # Something already after ``since``: answered at once despite a long timeout.
    message = room.message(ROOM, ALICE, "already here")
    await service.ingest([message])
    with trio.fail_after(5):
        ready = await service.sync.sync(device, SyncRequest(since=since, timeout_ms=60_000), park)
    body = orjson.loads(ready.dumps())
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert park.parked == 0
    # Nothing new with a timeout: parks once, and is answered by the next event.
    answer: list[StreamToken] = []

    async def poll() -> None:
        resp = await service.sync.sync(
            device, SyncRequest(since=ready.next_batch, timeout_ms=60_000), park
        )
        answer.append(resp.next_batch)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await wait_until(lambda: service.notifier.waiting() == 1)
            await service.ingest([room.message(ROOM, ALICE, "wake")])
    assert park.parked == 1
    assert answer and answer[0].is_after(ready.next_batch)


async def _request(stream: trio.SocketStream, path: str, token: str) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\r\n"
    await stream.send_all(head.encode())


async def _response(stream: trio.SocketStream) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
    while len(rest) < length:
        rest += await stream.receive_some(65536)
    return int(lines[0].split()[1]), orjson.loads(rest[:length])


async def test_client_leaving_a_parked_poll_on_a_keep_alive_connection(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    token = await service.add_device(BOB, "B")
    since = (await sync(http, token))["next_batch"]
    host, port = service.addresses[0].removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        # Ready answers on the connection first (no watcher task behind them) ...
        for _ in range(3):
            await _request(stream, f"{SYNC_PATH}?since={since}&timeout=0", token)
            status, body = await _response(stream)
            assert status == 200 and body["next_batch"] == since
        # ... then a poll that parks, and the client goes away while it is parked.
        await _request(stream, f"{SYNC_PATH}?since={since}&timeout=60000", token)
        await wait_until(lambda: service.notifier.waiting() == 1)
        await stream.aclose()
        await wait_until(lambda: service.notifier.waiting() == 0)
    # The server goes on answering, and the event that comes later is served normally.
    await _served_later(service, http, token, since, room.message(ROOM, ALICE, "afterwards"))


async def test_a_poll_woken_for_nothing_waits_on_and_ends_on_disconnect(
    service: Service, http: httpx.AsyncClient, room: RoomLog
) -> None:
    """On one keep-alive connection: a poll whose filter leaves out what woke it parks
    again, is answered by the next event it shows, and the next poll, parked again the
    same way, ends when its client goes away."""
    await service.ingest(
        [*room.create_room(OTHER_ROOM, ALICE), room.member(OTHER_ROOM, BOB, "join")]
    )
    token = await service.add_device(BOB, "B")
    since = (await sync(http, token))["next_batch"]
    not_room = quote(orjson.dumps({"room": {"not_rooms": [ROOM]}}).decode())
    host, port = service.addresses[0].removeprefix("http://").rsplit(":", 1)

    async def parked_past_a_wake(stream: trio.SocketStream, since: str, text: str) -> None:
        """A poll parked, then woken by a message its filter leaves out: parked again."""
        await _request(stream, f"{SYNC_PATH}?since={since}&timeout=60000&filter={not_room}", token)
        await wait_until(lambda: service.notifier.waiting() == 1)
        await service.ingest([room.message(ROOM, ALICE, text)])  # wakes Bob, a member
        await trio.sleep(0.2)
        await wait_until(lambda: service.notifier.waiting() == 1)

    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        await parked_past_a_wake(stream, since, "left out")
        shown = room.message(OTHER_ROOM, ALICE, "shown")
        await service.ingest([shown])
        status, body = await _response(stream)
        assert status == 200
        assert timeline_ids(body, "join", OTHER_ROOM) == [event_id(shown)]
        assert ROOM not in body.get("rooms", {}).get("join", {})
        # The next poll on the connection: woken for nothing, then its client leaves.
        since = body["next_batch"]
        await parked_past_a_wake(stream, since, "left out again")
        await stream.aclose()
        await wait_until(lambda: service.notifier.waiting() == 0)
    # Later events are served as usual.
    await _served_later(service, http, token, since, room.message(OTHER_ROOM, ALICE, "later"))
