"""Following a room server log file: appended lines reach /sync, partial and bad lines."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from trio_sync import Config, Service, open_service
from trio_sync.roomlog import RoomLog, dumps_lines
from trio_sync.storage import Conn

from .conftest import ALICE, BOB, SERVER, event_id, rooms_of, sync, timeline_ids

ROOM = f"!followed:{SERVER}"


@dataclass
class Followed:
    service: Service
    http: httpx.AsyncClient
    path: Path
    token: str
    log: RoomLog

    def append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)

    async def sync_until(
        self, done: Callable[[dict[str, Any]], bool], since: str | None = None
    ) -> dict[str, Any]:
        """Long-poll /sync from ``since`` until a response satisfies ``done`` (5 s at most)."""
        with trio.fail_after(5):
            while True:
                body = await sync(self.http, self.token, since=since, timeout=1000)
                if done(body):
                    return body
                since = body["next_batch"]

    async def rejects(self) -> int:
        async def count(conn: Conn) -> int:
            return int(await conn.fetchval("SELECT COUNT(*) FROM ingest_rejects"))

        return await self.service.engine.read(count)


@pytest.fixture
async def followed(config: Config, tmp_path: Path) -> AsyncIterator[Followed]:
    path = tmp_path / "roomserver.log"
    path.touch()
    cfg = dataclasses.replace(config, log=str(path), follow_poll_interval=0.05)
    async with (
        open_service(cfg) as service,
        httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as client,
    ):
        token = await service.add_device(ALICE, "FOLLOW")
        yield Followed(service, client, path, token, RoomLog(SERVER))


def has_event(room_id: str, eid: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        room = body.get("rooms", {}).get("join", {}).get(room_id)
        return room is not None and eid in [e["event_id"] for e in room["timeline"]["events"]]

    return check


async def test_appended_lines_appear_in_sync(followed: Followed) -> None:
    since = (await sync(followed.http, followed.token))["next_batch"]
    created = followed.log.create_room(ROOM, ALICE, name="Followed")
    followed.append(dumps_lines(created))
    body = await followed.sync_until(has_event(ROOM, event_id(created[-1])), since)
    assert rooms_of(body, "join") == {ROOM}

    message = followed.log.message(ROOM, ALICE, "appended later")
    followed.append(dumps_lines([message]))
    body = await followed.sync_until(has_event(ROOM, event_id(message)), body["next_batch"])
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert await followed.rejects() == 0


async def test_lines_already_in_the_file_are_ingested(config: Config, tmp_path: Path) -> None:
    log = RoomLog(SERVER)
    path = tmp_path / "existing.log"
    messages = [*log.create_room(ROOM, BOB), log.member(ROOM, ALICE, "join")]
    path.write_bytes(dumps_lines(messages))
    cfg = dataclasses.replace(config, log=str(path), follow_poll_interval=0.05)
    async with (
        open_service(cfg) as service,
        httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as client,
    ):
        token = await service.add_device(ALICE, "FOLLOW")
        f = Followed(service, client, path, token, log)
        await f.sync_until(has_event(ROOM, event_id(messages[-1])))


async def test_partial_last_line_waits_for_its_newline(followed: Followed) -> None:
    created = followed.log.create_room(ROOM, ALICE)
    message = followed.log.message(ROOM, ALICE, "split across two writes")
    line = dumps_lines([message])
    half = len(line) // 2
    followed.append(dumps_lines(created) + line[:half])
    body = await followed.sync_until(has_event(ROOM, event_id(created[-1])))

    # Many poll intervals pass with the partial line in the file: it is not a message yet.
    await trio.sleep(0.3)
    body = await sync(followed.http, followed.token, since=body["next_batch"])
    assert rooms_of(body, "join") == set()
    assert await followed.rejects() == 0

    followed.append(line[half:])
    body = await followed.sync_until(has_event(ROOM, event_id(message)), body["next_batch"])
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert await followed.rejects() == 0


async def test_partial_line_in_many_pieces(followed: Followed) -> None:
    created = followed.log.create_room(ROOM, ALICE)
    followed.append(dumps_lines(created))
    body = await followed.sync_until(has_event(ROOM, event_id(created[-1])))
    message = followed.log.message(ROOM, ALICE, "byte by byte-ish")
    line = dumps_lines([message])
    for start in range(0, len(line), 40):
        followed.append(line[start : start + 40])
        await trio.sleep(0.01)
    body = await followed.sync_until(has_event(ROOM, event_id(message)), body["next_batch"])
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert await followed.rejects() == 0


async def test_garbage_line_is_skipped_and_following_lines_ingested(followed: Followed) -> None:
    created = followed.log.create_room(ROOM, ALICE)
    after = [followed.log.message(ROOM, ALICE, f"after garbage {n}") for n in range(2)]
    followed.append(
        dumps_lines(created) + b"this is {not} a log message\n" + b"[1,2,3]\n" + dumps_lines(after)
    )
    body = await followed.sync_until(has_event(ROOM, event_id(after[-1])))
    assert timeline_ids(body, "join", ROOM)[-2:] == [event_id(m) for m in after]
    assert await followed.rejects() == 2


async def test_garbage_line_written_alone_then_good_lines(followed: Followed) -> None:
    created = followed.log.create_room(ROOM, ALICE)
    followed.append(dumps_lines(created))
    body = await followed.sync_until(has_event(ROOM, event_id(created[-1])))
    followed.append(b'{"type": "new_room_event", "new_room_event": {}}\n')
    await trio.sleep(0.2)
    message = followed.log.message(ROOM, ALICE, "still flowing")
    followed.append(dumps_lines([message]))
    body = await followed.sync_until(has_event(ROOM, event_id(message)), body["next_batch"])
    assert timeline_ids(body, "join", ROOM) == [event_id(message)]
    assert await followed.rejects() == 1


async def test_blank_lines_are_ignored(followed: Followed) -> None:
    created = followed.log.create_room(ROOM, ALICE)
    followed.append(b"\n\n" + dumps_lines(created) + b"\n  \n")
    await followed.sync_until(has_event(ROOM, event_id(created[-1])))
    assert await followed.rejects() == 0
