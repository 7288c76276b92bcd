"""Behaviours that were once wrong, end to end."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ALICE
from .test_http_surface import assert_error
from .test_sync_rooms import ROOM, ROOM_STATE, World, rooms_of, state_keys, world

__all__ = ["world"]


# full_state=true with a since token and no new events must still return every room.
async def test_full_state_returns_all_state(world: World) -> None:
    await world.alice_joins()
    since = await world.alice_now()
    body = await world.alice_sync(since=since, full_state=True)
    assert rooms_of(body, "join") == {ROOM}
    assert state_keys(body, "join", ROOM) == ROOM_STATE | {("m.room.member", ALICE)}


# An unknown path is 404 M_UNRECOGNIZED (a catch-all OPTIONS route once made it 405).
@pytest.mark.parametrize(
    "path", ["/", "/nope", "/_matrix/client/v3/nope", "/_matrix/client/v4/sync", "/_matrix"]
)
async def test_unknown_path_is_404_unrecognized(http: httpx.AsyncClient, path: str) -> None:
    assert_error(await http.get(path), 404, "M_UNRECOGNIZED")
