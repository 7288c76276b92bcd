"""The SQL statements a sliding sync request costs on PostgreSQL do not grow with the
number of rooms in its window: the rooms are built together, their queries sharing
statements (on SQLite, where a query is no round trip, they run one by one); and what
does not depend on an earlier answer is asked in the same statement."""

from __future__ import annotations

from typing import Any

import httpx

from trio_sync import Service

from .conftest import ALICE, BOB
from .sliding_support import room_id, room_list, rooms_in_order, sliding, texts, window

ROOMS = 30
EXTENSIONS = {
    name: {"enabled": True} for name in ("to_device", "e2ee", "account_data", "receipts", "typing")
}


def _request(end: int) -> dict[str, Any]:
    return {
        "lists": {"all": room_list(0, end, timeline_limit=5, required_state=[["m.room.name", ""]])},
        "extensions": EXTENSIONS,
    }


async def _counted(
    service: Service, http: httpx.AsyncClient, token: str, body: dict[str, Any], **params: Any
) -> tuple[int, dict[str, Any]]:
    before = service.engine.statements
    answer = await sliding(http, token, body, **params)
    return service.engine.statements - before, answer


async def test_a_window_of_twenty_rooms_costs_what_a_window_of_two_does(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = await rooms_in_order(service, ROOMS, BOB)
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    counts: dict[str, tuple[int, int]] = {}
    for token in (alice, bob):  # first requests of the service and of each user
        await sliding(http, token, _request(0) | {"conn_id": "warm-up"})
    for user, token, end in (("small", alice, 1), ("large", bob, 19)):
        firsts, agains = [], []
        # Twice, the least count kept: a statement of a background task that happens to
        # run meanwhile is counted too.
        for attempt in range(2):
            request = _request(end) | {"conn_id": f"{user}-{attempt}"}
            first, body = await _counted(service, http, token, request)
            assert window(body) == [room_id(ROOMS - 1 - n) for n in range(end + 1)]
            assert all(texts(body["rooms"][r]) for r in window(body))
            # One new message in the room at the top of the window.
            await service.ingest([log.message(room_id(ROOMS - 1), ALICE, f"{user} {attempt}")])
            again, body = await _counted(service, http, token, request, pos=body["pos"])
            assert list(body["rooms"]) == [room_id(ROOMS - 1)]
            firsts.append(first)
            agains.append(again)
        counts[user] = (min(firsts), min(agains))
    if service.engine.name == "postgres":
        # Ten times the rooms, no more statements. A new connection: the rooms and
        # extensions in four rounds (shared reads with the rooms' timelines and summaries;
        # required state; relations), then dropping the replaced connection, finding
        # expired ones, and the new connection with its position and rooms in one
        # statement. Incremental: new events since the last request, then the room's
        # counts, timeline, state delta and relations with the extensions; the new
        # position in one statement.
        assert counts["small"] == counts["large"] == (7, 3)
    else:
        assert counts["large"][0] > counts["small"][0]


async def test_a_message_with_its_notification_counts_costs_no_more_statements(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = await rooms_in_order(service, ROOMS, BOB)
    bob = await service.add_device(BOB, "B")
    await sliding(http, bob, _request(0) | {"conn_id": "warm-up"})
    top = room_id(ROOMS - 1)
    counted = []
    for attempt in range(2):  # the least count kept (see above)
        request = _request(19) | {"conn_id": f"c{attempt}"}
        body = await sliding(http, bob, request)
        # The homeserver's push evaluation comes with the message: the notification
        # stream moves, so the other rooms of the window are looked at for new counts.
        counts = {
            "type": "notification_data",
            "notification_data": {
                "user_id": BOB,
                "room_id": top,
                "unread_notification_count": attempt + 1,
                "unread_highlight_count": 0,
            },
        }
        await service.ingest([log.message(top, ALICE, f"news {attempt}"), counts])
        again, body = await _counted(service, http, bob, request, pos=body["pos"])
        assert list(body["rooms"]) == [top]
        assert body["rooms"][top]["notification_count"] == attempt + 1
        counted.append(again)
    if service.engine.name == "postgres":
        # Which other rooms' counts changed is asked with the top room's reads.
        assert min(counted) == 3
