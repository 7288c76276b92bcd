"""Incremental syncs over short, medium and long gaps give the same answers.

The PDU stream reads a short gap in one query, a medium one by first finding the active
rooms, and a long one room by room; whichever is used, a client must see the same rooms,
timelines, ``limited`` flags and state.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, SERVER, event_id, ids, sync

BUSY, QUIET, IDLE, LEFT, ELSEWHERE = (
    f"!{name}:{SERVER}" for name in ("busy", "quiet", "idle", "left", "elsewhere")
)


@pytest.mark.parametrize("gap", [3, 150, 600, 2100])
async def test_incremental_sync_is_the_same_whatever_the_gap(
    service: Service, http: httpx.AsyncClient, gap: int
) -> None:
    log = RoomLog(SERVER)
    setup: list[dict[str, Any]] = []
    for room in (BUSY, QUIET, IDLE, LEFT):
        setup += log.create_room(room, BOB, room)
        setup.append(log.member(room, ALICE, "join"))
    setup += log.create_room(ELSEWHERE, BOB)
    await service.ingest(setup)
    token = await service.add_device(ALICE, "A")
    since = (await sync(http, token))["next_batch"]

    # The gap: a topic change early in BUSY, then the bulk of the gap in a room Alice is
    # not in, Alice leaving LEFT, then the newest events in BUSY and QUIET.
    early_topic = log.event(BUSY, BOB, "m.room.topic", {"topic": "early"}, "")
    filler = [log.message(ELSEWHERE, BOB, f"filler {n}") for n in range(max(0, gap - 16))]
    leave = log.member(LEFT, ALICE, "leave")
    after_leave = log.message(LEFT, BOB, "you will not see this")
    busy = [log.message(BUSY, BOB, f"busy {n}") for n in range(12)]
    quiet = log.message(QUIET, BOB, "quiet one")
    await service.ingest([early_topic, *filler, leave, after_leave, *busy, quiet])

    body = await sync(http, token, since=since, timeout=0)
    join = body["rooms"]["join"]
    assert set(join) == {BUSY, QUIET}
    assert ids(join[BUSY]["timeline"]["events"]) == [event_id(m) for m in busy[-10:]]
    assert join[BUSY]["timeline"]["limited"] is True
    assert ids(join[BUSY]["state"]["events"]) == [event_id(early_topic)]
    assert ids(join[QUIET]["timeline"]["events"]) == [event_id(quiet)]
    assert join[QUIET]["timeline"]["limited"] is False
    assert join[QUIET]["state"]["events"] == []
    left = body["rooms"]["leave"][LEFT]
    assert ids(left["timeline"]["events"]) == [event_id(leave)]
    assert event_id(after_leave) not in str(body)
