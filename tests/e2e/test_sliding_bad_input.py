"""Bad sliding sync requests are 400 Matrix errors, never 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, auth
from .sliding_support import SLIDING, room_list, sliding

BAD_BODIES: list[Any] = [
    {"lists": {"a": {"ranges": [[5, 2]]}}},
    {"lists": {"a": {"ranges": [[-1, 2]]}}},
    {"lists": {"a": {"ranges": [[0]]}}},
    {"lists": {"a": {"ranges": "0-9"}}},
    {"lists": {"a": {"range": [3, 1]}}},
    {"lists": {f"l{n}": room_list() for n in range(101)}},
    {"room_subscriptions": {f"!r{n}:x": {} for n in range(101)}},
    {"lists": {"a": {"ranges": [[0, 1]], "required_state": [["m.room.name"]]}}},
    {"lists": {"a": {"ranges": [[0, 1]], "required_state": [["m.room.name", 1]]}}},
    {"lists": {"a": {"ranges": [[0, 1]], "required_state": "all"}}},
    {"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": -1}}},
    {"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": "10"}}},
    {"lists": {"a": {"ranges": [[0, 1]], "filters": {"is_dm": "yes"}}}},
    {"lists": {"a": {"ranges": [[0, 1]], "filters": {"tags": "u.work"}}}},
    {"lists": []},
    {"extensions": {"to_device": {"enabled": "true"}}},
    {"extensions": {"to_device": {"enabled": True, "since": 5}}},
    {"extensions": {"to_device": {"enabled": True, "limit": "many"}}},
    {"extensions": {"account_data": {"enabled": True, "lists": "all"}}},
    {"extensions": {"e2ee": []}},
    {"room_subscriptions": {"not-a-room": {}}},
    {"unsubscribe_rooms": "!a:x"},
    {"conn_id": 7},
    [],
]


@pytest.fixture
async def alice(service: Service) -> str:
    return await service.add_device(ALICE, "PHONE")


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_bad_bodies_are_400(http: httpx.AsyncClient, alice: str, body: Any) -> None:
    err = await sliding(http, alice, body, status=400)
    assert err["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM")


async def test_not_json_and_bad_parameters(http: httpx.AsyncClient, alice: str) -> None:
    r = await http.post(SLIDING, content=b"{nope", headers=auth(alice))
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    for params in ({"timeout": "soon"}, {"timeout": "-5"}, {"set_presence": "away"}):
        r = await http.post(SLIDING, json={}, params=params, headers=auth(alice))
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM", r.text
    r = await http.post(SLIDING, json={})
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    r = await http.get(SLIDING, headers=auth(alice))
    assert r.status_code == 405
