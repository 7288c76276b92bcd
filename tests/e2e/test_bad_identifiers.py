"""Identifiers are checked where requests enter: a NUL character (which PostgreSQL cannot
store or compare), a lone surrogate, or an ID of the wrong shape in a path or query is
400 ``M_INVALID_PARAM`` on both backends — never a 500 from the database."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, auth
from .rooms_support import ROOM, make_rooms

V3 = "/_matrix/client/v3"
R = "%21lobby%3Aexample.org"
A = "%40alice%3Aexample.org"

BAD_GETS = [
    f"/rooms/{R}/event/%24%00",
    f"/rooms/{R}/event/%24x%00y",
    "/rooms/%21%00%3Alocalhost/event/%24x",
    "/rooms/%21%00%3Alocalhost/messages?dir=b",
    "/rooms/%21%00%3Alocalhost/members",
    "/rooms/%21%00%3Alocalhost/joined_members",
    f"/rooms/{R}/context/%24%00",
    f"/rooms/{R}/context/%00",
    f"/rooms/{R}/messages?dir=b&from=%00",
    f"/rooms/{R}/messages?dir=b&filter=%00",
    f"/rooms/{R}/members?at=s%00",
    f"/user/{A}/account_data/%E2%80%AE%00x",
    f"/user/{A}/rooms/{R}/account_data/x%00",
    f"/user/{A}/rooms/%21%00/account_data/x",
    f"/user/{A}/filter/%00",
    "/user/%40%00%3Ax/filter/1",
    "/presence/%40%00%3Aexample.org/status",
    "/sync?filter=%00",
    "/sync?since=%00",
    "/sync?filter=1%00",
    "/keys/changes?from=%00&to=s1",
    f"/rooms/{R}/event/%ED%A0%80",
]
BAD_PUTS = [
    f"/user/{A}/account_data/x%00",
    f"/user/{A}/rooms/{R}/tags/t%00",
    "/sendToDevice/m.x%00/t1",
    "/sendToDevice/m.x/t%00",
    f"/rooms/{R}/typing/%40%00%3Ax",
    "/presence/%40alice%00%3Aexample.org/status",
]
BAD_POSTS = [
    f"/rooms/{R}/receipt/m.read/%24%00",
    "/user/%40%00%3Ax/filter",
]


@pytest.fixture
async def token(service: Service, http: httpx.AsyncClient) -> str:
    rooms = await make_rooms(service, http)
    await rooms.room()
    await rooms.join(ROOM, ALICE)
    return rooms.tokens[ALICE]


async def _check(r: httpx.Response, what: str) -> None:
    assert r.status_code in (400, 404), f"{what}: {r.status_code} {r.text}"
    body = r.json()
    assert body["errcode"] in ("M_INVALID_PARAM", "M_NOT_FOUND"), f"{what}: {r.text}"


@pytest.mark.parametrize("path", BAD_GETS)
async def test_bad_identifier_in_a_get_is_a_client_error(
    http: httpx.AsyncClient, token: str, path: str
) -> None:
    r = await http.get(V3 + path, headers=auth(token))
    await _check(r, path)
    if "%00" in path:
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), r.text


@pytest.mark.parametrize("path", BAD_PUTS)
async def test_bad_identifier_in_a_put_is_a_client_error(
    http: httpx.AsyncClient, token: str, path: str
) -> None:
    r = await http.put(V3 + path, headers=auth(token), content=b'{"typing": false}')
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), r.text


@pytest.mark.parametrize("path", BAD_POSTS)
async def test_bad_identifier_in_a_post_is_a_client_error(
    http: httpx.AsyncClient, token: str, path: str
) -> None:
    r = await http.post(V3 + path, headers=auth(token), content=b"{}")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), r.text


async def test_a_nul_in_the_access_token_is_an_unknown_token(
    http: httpx.AsyncClient, token: str
) -> None:
    for path in ("/sync?access_token=%00", "/joined_rooms?access_token=a%00b"):
        r = await http.get(V3 + path)
        assert r.status_code == 401, r.text
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
