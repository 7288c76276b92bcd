"""The ingest task and the followed JSON-lines log file, against real storage."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest
import trio

from trio_sync.ingest import Ingestor
from trio_sync.ingest.runner import source_offset
from trio_sync.roomlog import RoomLog, dumps_lines
from trio_sync.sources.file import file_source, follow_file
from trio_sync.storage import Engine

from .support import ALICE, ROOM, Message, event_id_of, pdu_of, rejects, snapshot, stored_events


class Progress:
    """A ``progress`` callback for ``follow_file`` that tests can wait on."""

    def __init__(self) -> None:
        self.done = 0
        self._changed = trio.Event()

    def __call__(self, done: int, total: int, messages: int) -> None:
        self.done = done
        self._changed.set()
        self._changed = trio.Event()

    async def reach(self, offset: int) -> None:
        with trio.fail_after(10):
            while self.done < offset:
                await self._changed.wait()


def _messages(n: int) -> list[Message]:
    log = RoomLog()
    out = log.create_room(ROOM, ALICE)
    out += [log.message(ROOM, ALICE, f"message {i}") for i in range(n - len(out))]
    return out


async def _ids(engine: Engine) -> list[str]:
    return [event_id for _, event_id in await stored_events(engine)]


async def _offset(engine: Engine, path: Path) -> int:
    return await engine.read(source_offset, file_source(str(path)))


async def start_follower(
    nursery: trio.Nursery, path: Path, ingestor: Ingestor, progress: Progress
) -> None:
    """Follow ``path`` (polling every 10 ms) in ``nursery``; return once it is reading."""
    await nursery.start(
        lambda task_status: follow_file(
            str(path),
            ingestor,
            follow=True,
            poll_interval=0.01,
            progress=progress,
            task_status=task_status,
        )
    )


async def test_partial_last_line_is_left_until_completed(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(8)
    whole = dumps_lines(messages[:7])
    last = orjson.dumps(messages[7]) + b"\n"
    path = tmp_path / "log.jsonl"
    path.write_bytes(whole + last[:25])

    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages[:7]]
    assert await _offset(engine, path) == len(whole)
    assert await stored_events(engine) == list(enumerate(await _ids(engine), start=1))
    assert await rejects(engine) == []  # the fragment was not taken for a bad message

    with path.open("ab") as f:
        f.write(last[25:])
    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages]
    assert await _offset(engine, path) == path.stat().st_size
    assert ingestor.notifier.current.pdu == len(messages)


async def test_following_picks_up_lines_as_they_are_written(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(12)
    data = dumps_lines(messages)
    cut = len(dumps_lines(messages[:6])) + 10  # mid-way through the 7th line
    path = tmp_path / "log.jsonl"
    path.write_bytes(data[:cut])
    progress = Progress()

    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, progress)
        await progress.reach(cut - 10)
        assert await _ids(engine) == [event_id_of(m) for m in messages[:6]]

        with path.open("ab") as f:
            f.write(data[cut:])
        await progress.reach(len(data))
        assert await _ids(engine) == [event_id_of(m) for m in messages]
        assert await _offset(engine, path) == len(data)
        nursery.cancel_scope.cancel()


async def test_following_waits_for_the_file_to_appear(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(7)
    path = tmp_path / "later.jsonl"
    progress = Progress()
    async with trio.open_nursery() as nursery:
        await start_follower(nursery, path, ingestor, progress)
        path.write_bytes(dumps_lines(messages))
        await progress.reach(path.stat().st_size)
        nursery.cancel_scope.cancel()
    assert await _ids(engine) == [event_id_of(m) for m in messages]


async def test_missing_file_without_follow_is_an_error(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await follow_file(str(tmp_path / "nope.jsonl"), ingestor, follow=False)


async def test_rerunning_over_the_same_file_applies_nothing_twice(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(9)
    bad = b'{"type": "new_room_event"'
    data = dumps_lines(messages[:4]) + b"\n" + bad + b"\n" + dumps_lines(messages[4:]) + b"  \n"
    path = tmp_path / "log.jsonl"
    path.write_bytes(data)

    await follow_file(str(path), ingestor, follow=False, batch_lines=3)
    first = await snapshot(engine)
    recorded = await rejects(engine)
    for _ in range(2):
        await follow_file(str(path), ingestor, follow=False, batch_lines=3)
    assert await snapshot(engine) == first
    assert await rejects(engine) == recorded

    assert await _ids(engine) == [event_id_of(m) for m in messages]
    assert len(recorded) == 1
    _, source, offset, _, raw = recorded[0]
    assert (source, raw) == (file_source(str(path)), bad)
    assert offset is not None
    assert data[offset : offset + len(bad)] == bad
    assert await _offset(engine, path) == len(data)


async def test_small_batches_keep_order_and_offsets(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(23)
    path = tmp_path / "log.jsonl"
    path.write_bytes(dumps_lines(messages))
    seen: list[int] = []
    await follow_file(
        str(path), ingestor, follow=False, batch_lines=2, progress=lambda d, t, n: seen.append(d)
    )
    assert await stored_events(engine) == list(
        enumerate([event_id_of(m) for m in messages], start=1)
    )
    assert seen[-1] == await _offset(engine, path) == path.stat().st_size


async def test_each_file_has_its_own_offset(
    engine: Engine, ingestor: Ingestor, tmp_path: Path
) -> None:
    messages = _messages(10)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    one.write_bytes(dumps_lines(messages[:6]))
    two.write_bytes(dumps_lines(messages[6:]))
    await follow_file(str(one), ingestor, follow=False)
    await follow_file(str(two), ingestor, follow=False)
    assert await _offset(engine, one) == one.stat().st_size
    assert await _offset(engine, two) == two.stat().st_size
    assert await _ids(engine) == [event_id_of(m) for m in messages]


def _poisoned(message: Message, where: str) -> Message:
    """A copy of a ``new_room_event`` message with a NUL character in one of its strings."""
    poison = copy.deepcopy(message)
    pdu = pdu_of(poison)
    if where == "membership":
        pdu.update(type="m.room.member", state_key=ALICE, content={"membership": "jo\u0000in"})
    elif where == "unsigned":
        pdu["unsigned"] = {"prev_content": {"k\u0000": 1}}
    else:
        pdu[where] = f"{pdu.get(where) or '$x'}\u0000tail"
    return poison


@pytest.mark.parametrize(
    "where", ["_event_id", "type", "sender", "room_id", "state_key", "membership"]
)
async def test_a_message_the_database_cannot_store_is_rejected_not_stalled(
    engine: Engine, ingestor: Ingestor, tmp_path: Path, where: str
) -> None:
    # PostgreSQL cannot store a NUL character in text; SQLite could. On both backends such
    # a message is recorded as rejected at parse time, and the messages around it applied.
    messages = _messages(10)
    poison = _poisoned(messages[6], where)
    batch = [*messages[:6], poison, *messages[6:]]
    path = tmp_path / "log.jsonl"
    path.write_bytes(dumps_lines(batch))

    await follow_file(str(path), ingestor, follow=False)
    assert await _ids(engine) == [event_id_of(m) for m in messages]
    recorded = await rejects(engine)
    assert [raw for *_, raw in recorded] == [orjson.dumps(poison)]
    assert "NUL" in recorded[0][3] and "storage error" not in recorded[0][3]
    assert await _offset(engine, path) == path.stat().st_size
