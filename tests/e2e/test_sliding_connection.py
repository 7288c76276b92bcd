"""Sliding sync connections: positions kept in the database (valid across a restart),
rejected for other users and devices, long-polls woken exactly when the client's view
changes, and timeouts."""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_sync import Config, Service, open_service
from trio_sync.storage import Conn

from .conftest import ALICE, BOB
from .sliding_support import parked_then, room_id, room_list, rooms_in_order, sliding, texts, window

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
async def alice(service: Service) -> str:
    return await service.add_device(ALICE, "PHONE")


async def test_a_pos_survives_a_restart(config: Config) -> None:
    async with open_service(config) as service:
        log = await rooms_in_order(service, 3)
        token = await service.add_device(ALICE, "PHONE")
        async with httpx.AsyncClient(base_url=service.addresses[0]) as http:
            request = {"lists": {"all": room_list(0, 2, timeline_limit=2)}}
            first = await sliding(http, token, request)
    async with open_service(config) as service:
        await service.ingest([log.message(room_id(0), ALICE, "after restart")])
        async with httpx.AsyncClient(base_url=service.addresses[0]) as http:
            second = await sliding(http, token, request, pos=first["pos"])
            assert list(second["rooms"]) == [room_id(0)]
            assert "initial" not in second["rooms"][room_id(0)]
            assert texts(second["rooms"][room_id(0)]) == ["after restart"]
            assert window(second)[0] == room_id(0)


async def test_unknown_and_foreign_positions_are_rejected(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    await rooms_in_order(service, 1, BOB)
    bob = await service.add_device(BOB, "B")
    other_device = await service.add_device(ALICE, "LAPTOP")
    first = await sliding(http, alice, {"lists": {"all": room_list()}})
    for token, params in (
        (alice, {"pos": "999999"}),
        (alice, {"pos": "not-a-pos"}),
        (bob, {"pos": first["pos"]}),
        (other_device, {"pos": first["pos"]}),
    ):
        err = await sliding(http, token, {}, status=400, **params)
        assert err["errcode"] == "M_UNKNOWN_POS"
    # Another conn_id of the same device does not own it either.
    err = await sliding(http, alice, {"conn_id": "other"}, status=400, pos=first["pos"])
    assert err["errcode"] == "M_UNKNOWN_POS"
    # pos in the body (the merged proposal's spelling) works too.
    ok = await sliding(http, alice, {"pos": first["pos"], "lists": {"all": room_list()}})
    assert ok["rooms"] == {}


async def test_a_new_connection_replaces_the_old_one(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    await rooms_in_order(service, 1)
    first = await sliding(http, alice, {"lists": {"all": room_list()}})
    fresh = await sliding(http, alice, {"lists": {"all": room_list()}})
    assert fresh["rooms"][room_id(0)]["initial"] is True
    err = await sliding(http, alice, {}, status=400, pos=first["pos"])
    assert err["errcode"] == "M_UNKNOWN_POS"


async def test_long_poll_wakes_for_a_new_event_in_a_window(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 3)
    request = {"lists": {"all": room_list(0, 2)}}
    first = await sliding(http, alice, request)

    async def write() -> None:
        await service.ingest([log.message(room_id(1), ALICE, "wake up")])

    body = await parked_then(service, http, alice, request, first["pos"], write)
    assert body is not None
    assert texts(body["rooms"][room_id(1)]) == ["wake up"]


async def test_long_poll_times_out_with_the_same_pos(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    await rooms_in_order(service, 1)
    request = {"lists": {"all": room_list()}}
    first = await sliding(http, alice, request)
    start = trio.current_time()
    body = await sliding(http, alice, request, pos=first["pos"], timeout=300)
    assert trio.current_time() - start >= 0.3
    assert body["pos"] == first["pos"]
    assert body["rooms"] == {}


async def test_a_message_outside_every_window_wakes_only_when_the_window_changes(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 8)
    # Order: r7 r6 r5 r4 r3 r2 r1 r0; the window is positions 4..5: r3, r2.
    request = {"lists": {"all": room_list(4, 5)}}
    first = await sliding(http, alice, request)
    assert window(first) == [room_id(3), room_id(2)]

    async def above_window() -> None:
        # r6 moves to the top: r7 shifts down, but positions 4..5 keep r3, r2.
        await service.ingest([log.message(room_id(6), ALICE, "above")])

    await parked_then(
        service, http, alice, request, first["pos"], above_window, expect_answer=False
    )

    async def below_window() -> None:
        # r0 moves to the top: everything above it shifts, so r4 enters the window.
        await service.ingest([log.message(room_id(0), ALICE, "below")])

    body = await parked_then(service, http, alice, request, first["pos"], below_window)
    assert body is not None
    assert window(body) == [room_id(4), room_id(3)]
    assert list(body["rooms"]) == [room_id(4)]
    assert body["lists"]["all"]["count"] == 8


async def test_a_message_in_a_filtered_out_room_does_not_wake(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 2)
    await service.ingest(
        [
            {
                "type": "client_data",
                "client_data": {
                    "user_id": ALICE,
                    "type": "m.direct",
                    "content": {BOB: [room_id(0)]},
                },
            }
        ]
    )
    request = {"lists": {"dms": room_list(filters={"is_dm": True})}}
    first = await sliding(http, alice, request)
    assert window(first, "dms") == [room_id(0)]

    async def elsewhere() -> None:
        await service.ingest([log.message(room_id(1), ALICE, "not a dm")])

    await parked_then(service, http, alice, request, first["pos"], elsewhere, expect_answer=False)


async def _age(conn: Conn, conn_id: str, ms: int) -> None:
    """Date a connection's positions back by ``ms`` (as if it had not been used since)."""
    await conn.execute(
        "UPDATE sliding_positions SET created_at = created_at - $1 WHERE connection_id = "
        "(SELECT id FROM sliding_connections WHERE conn_id = $2)",
        ms,
        conn_id,
    )


async def _rows(conn: Conn) -> dict[str, tuple[int, int]]:
    """Per ``conn_id``: how many positions and room rows the connection has stored."""
    rows = await conn.fetch(
        "SELECT c.conn_id, (SELECT COUNT(*) FROM sliding_positions p "
        "WHERE p.connection_id = c.id), (SELECT COUNT(*) FROM sliding_rooms r "
        "WHERE r.connection_id = c.id) FROM sliding_connections c"
    )
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


async def test_expired_connections_are_removed_with_their_rooms(config: Config) -> None:
    request = {"lists": {"all": room_list(0, 2)}}
    async with open_service(config) as service:
        await rooms_in_order(service, 3)
        token = await service.add_device(ALICE, "PHONE")
        async with httpx.AsyncClient(base_url=service.addresses[0]) as http:
            old = await sliding(http, token, {**request, "conn_id": "old"})
            kept = await sliding(http, token, {**request, "conn_id": "kept"})
        assert await service.engine.read(_rows) == {"old": (1, 3), "kept": (1, 3)}
        # Eight days without a request on "old"; six on "kept" (still within the week).
        await service.engine.write(_age, "old", 8 * DAY_MS)
        await service.engine.write(_age, "kept", 6 * DAY_MS)
    async with (
        open_service(config) as service,
        httpx.AsyncClient(base_url=service.addresses[0]) as http,
    ):
        # A new connection clears the expired one away, positions and rooms.
        await sliding(http, token, {**request, "conn_id": "new"})
        assert await service.engine.read(_rows) == {"kept": (1, 3), "new": (1, 3)}
        err = await sliding(http, token, {"conn_id": "old"}, status=400, pos=old["pos"])
        assert err["errcode"] == "M_UNKNOWN_POS"
        still = await sliding(http, token, {**request, "conn_id": "kept"}, pos=kept["pos"])
        assert still["rooms"] == {}
