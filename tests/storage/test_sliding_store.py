"""Sliding sync connection state as stored: what a position holds when read back from the
database (as after a restart), on both backends."""

from __future__ import annotations

import pytest

from trio_sync.errors import MatrixError
from trio_sync.sliding.request import RequiredState, RoomConfig
from trio_sync.sliding.store import (
    COMPACT_EVERY,
    Connection,
    ListState,
    SentRoom,
    load_connection,
    record_position,
)
from trio_sync.storage import Conn, Engine
from trio_sync.tokens import StreamToken

USER = "@alice:example.org"
NAME = RequiredState(frozenset({("m.room.name", "")}))


def _sent(upto: int) -> SentRoom:
    return SentRoom(upto, 5, NAME, ("@bob:example.org",), counts_at=upto + 1)


async def _record(
    engine: Engine,
    built_on: Connection,
    rooms: dict[str, SentRoom],
    conn_id: str = "c",
    device_id: str = "PHONE",
) -> Connection:
    """Record a response built on ``built_on`` sending ``rooms``; the new position as
    read back from the database."""
    token = StreamToken(pdu=10 + len(rooms))
    subscriptions = {"!sub:x": RoomConfig(NAME, 3)}
    lists = {"all": ListState(7, sorted(rooms))}
    _, pos = await engine.write(
        record_position, USER, device_id, conn_id, built_on, token, subscriptions, lists, rooms
    )
    loaded = await engine.read(load_connection, USER, device_id, conn_id, pos)
    assert (loaded.token, loaded.subscriptions, loaded.lists) == (token, subscriptions, lists)
    return loaded


async def _room_rows(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT COUNT(*) FROM sliding_rooms"))


async def test_positions_read_back_with_every_room_sent_up_to_them(engine: Engine) -> None:
    first = await _record(engine, Connection(), {"!a:x": _sent(3), "!b:x": _sent(4)})
    assert first.rooms == {"!a:x": _sent(3), "!b:x": _sent(4)}
    second = await _record(engine, first, {"!b:x": _sent(9)})
    assert second.id == first.id
    assert second.rooms == {"!a:x": _sent(3), "!b:x": _sent(9)}
    # Nothing sent: the position still holds what came before.
    third = await _record(engine, second, {})
    assert third.rooms == second.rooms
    # Another connection of the same device is its own.
    other = await _record(engine, Connection(), {"!c:x": _sent(1)}, conn_id="other")
    assert other.id != first.id and other.rooms == {"!c:x": _sent(1)}


async def test_a_response_given_but_not_used_is_forgotten(engine: Engine) -> None:
    first = await _record(engine, Connection(), {"!a:x": _sent(3)})
    unused = await _record(engine, first, {"!b:x": _sent(5)})
    # The client retried from ``first``: what ``unused`` sent it never had.
    retried = await _record(engine, first, {"!c:x": _sent(6)})
    assert retried.rooms == {"!a:x": _sent(3), "!c:x": _sent(6)}
    with pytest.raises(MatrixError) as err:
        await engine.read(load_connection, USER, "PHONE", "c", unused.pos)
    assert err.value.errcode == "M_UNKNOWN_POS"
    # Using ``retried`` drops ``first``.
    after = await _record(engine, retried, {})
    assert after.rooms == retried.rooms
    with pytest.raises(MatrixError):
        await engine.read(load_connection, USER, "PHONE", "c", first.pos)


async def test_superseded_room_rows_are_compacted_away(engine: Engine) -> None:
    state = await _record(engine, Connection(), {"!a:x": _sent(1), "!b:x": _sent(1)})
    upto = 1
    while True:
        assert state.pos is not None
        acked = state.pos
        upto += 1
        state = await _record(engine, state, {"!a:x": _sent(upto)})
        assert state.rooms == {"!a:x": _sent(upto), "!b:x": _sent(1)}
        if acked % COMPACT_EVERY == 0:
            break
    # Acknowledging a multiple of COMPACT_EVERY left one row per room up to it, and
    # the row of the new position.
    assert await engine.read(_room_rows) == 3


async def test_a_replaced_connection_cannot_record_on_its_old_position(engine: Engine) -> None:
    first = await _record(engine, Connection(), {"!a:x": _sent(3)})
    replaced = await _record(engine, Connection(), {"!b:x": _sent(4)})
    assert replaced.id != first.id and replaced.rooms == {"!b:x": _sent(4)}
    with pytest.raises(MatrixError) as err:
        await _record(engine, first, {"!c:x": _sent(5)})
    assert err.value.errcode == "M_UNKNOWN_POS"
    # Nothing of the refused request was kept; the new connection is whole.
    assert (await _record(engine, replaced, {})).rooms == {"!b:x": _sent(4)}
    assert await engine.read(_room_rows) == 1
