"""An incremental sync across a long gap (more events than one range scan covers) gives
every room its limited timeline, the state that changed in the gap and its summary."""

from __future__ import annotations

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog
from trio_sync.sync.streams.pdu import RANGE_SCAN_MAX

from .conftest import ALICE, BOB, SERVER, event_id, room_section, state_keys, sync, timeline_ids

CAROL = f"@carol:{SERVER}"
QUIET = f"!quiet:{SERVER}"
BUSY = f"!busy:{SERVER}"


async def test_a_long_gap_brings_each_rooms_state_changes_and_summary(
    service: Service, http: httpx.AsyncClient
) -> None:
    alice = await service.add_device(ALICE, "ALICEDEV")
    log = RoomLog(SERVER)
    await service.ingest(
        [
            *log.create_room(QUIET, ALICE),
            *log.create_room(BUSY, ALICE),
            log.member(BUSY, BOB, "join"),
        ]
    )
    since = (await sync(http, alice))["next_batch"]
    topic = log.event(QUIET, ALICE, "m.room.topic", {"topic": "new"}, "")
    carol_joins = log.member(BUSY, CAROL, "join")
    await service.ingest([topic, carol_joins])
    filler = [log.message(BUSY, BOB, f"m{i}") for i in range(RANGE_SCAN_MAX + 100)]
    for start in range(0, len(filler), 500):
        await service.ingest(filler[start : start + 500])
    last_quiet = log.message(QUIET, ALICE, "still here")
    await service.ingest([last_quiet])

    body = await sync(http, alice, since=since, filter='{"room":{"timeline":{"limit":3}}}')
    busy = room_section(body, "join", BUSY)
    assert busy["timeline"]["limited"] is True
    assert timeline_ids(body, "join", BUSY) == [event_id(m) for m in filler[-3:]]
    assert ("m.room.member", CAROL) in state_keys(body, "join", BUSY)
    assert busy["summary"]["m.joined_member_count"] == 3
    quiet = room_section(body, "join", QUIET)
    assert timeline_ids(body, "join", QUIET) == [event_id(topic), event_id(last_quiet)]
    assert quiet["timeline"]["limited"] is False
    assert "summary" not in quiet
