"""No request to any client endpoint is a server error: bad paths, queries and bodies all
get a Matrix error (``{"errcode", "error"}``) with a 4xx status."""

from __future__ import annotations

import random
from urllib.parse import quote

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, SERVER, auth, event_id

ROOM = f"!fuzz:{SERVER}"
V3 = "/_matrix/client/v3"

NASTY = [
    "",
    "x",
    "-1",
    "0",
    "1e400",
    "99999999999999999999999",
    "s",
    "t",
    "s1_2",
    "t-1_-1",
    "s0_0_0_0_0_0_0_0_0",
    "t99999999999999999999_1",
    "%00",
    "%FF",
    "!",
    "@",
    "@x:y",
    "!x:y",
    "$x",
    "{",
    '{"types":[0]}',
    '{"lazy_load_members":"yes"}',
    "a" * 3000,
]
BODIES = [
    b"",
    b"null",
    b"[]",
    b"{",
    b"\xff",
    b"1",
    b'"x"',
    b'{"typing": "yes"}',
    b'{"typing": true, "timeout": -5}',
    b'{"typing": true, "timeout": 1e400}',
    b'{"presence": "busy"}',
    b'{"presence": 5}',
    b'{"status_msg": 5, "presence": "online"}',
    b'{"messages": []}',
    b'{"messages": {"@x:y": []}}',
    b'{"messages": {"@x:y": {"*": 5}}}',
    b'{"m.fully_read": 5}',
    b'{"m.fully_read": "$x", "m.read": [], "m.read.private": {}}',
    b'{"thread_id": 5}',
    b'{"order": "high"}',
    b'{"ignored_users": []}',
    b"[" * 2000 + b"]" * 2000,
]


def _paths(message: str) -> list[tuple[str, str]]:
    room, user = quote(ROOM), quote(ALICE)
    return [
        ("GET", f"/rooms/{room}/messages"),
        ("GET", f"/rooms/{room}/context/{quote(message)}"),
        ("GET", f"/rooms/{room}/event/{quote(message)}"),
        ("GET", f"/rooms/{room}/members"),
        ("GET", f"/rooms/{room}/joined_members"),
        ("GET", "/joined_rooms"),
        ("GET", "/keys/changes"),
        ("GET", f"/presence/{user}/status"),
        ("PUT", f"/presence/{user}/status"),
        ("PUT", f"/rooms/{room}/typing/{user}"),
        ("POST", f"/rooms/{room}/receipt/m.read/{quote(message)}"),
        ("POST", f"/rooms/{room}/read_markers"),
        ("PUT", "/sendToDevice/m.test/txn1"),
        ("GET", f"/user/{user}/account_data/m.test"),
        ("PUT", f"/user/{user}/account_data/m.test"),
        ("PUT", f"/user/{user}/account_data/m.ignored_user_list"),
        ("GET", f"/user/{user}/rooms/{room}/account_data/m.test"),
        ("PUT", f"/user/{user}/rooms/{room}/account_data/m.test"),
        ("GET", f"/user/{user}/rooms/{room}/tags"),
        ("PUT", f"/user/{user}/rooms/{room}/tags/u.work"),
        ("DELETE", f"/user/{user}/rooms/{room}/tags/u.work"),
    ]


def _query(rng: random.Random) -> str:
    keys = ["dir", "from", "to", "limit", "filter", "at", "membership", "not_membership", "x"]
    return "&".join(
        f"{key}={quote(rng.choice(NASTY))}" for key in rng.sample(keys, rng.randint(0, 4))
    )


async def test_no_request_is_a_server_error(service: Service, http: httpx.AsyncClient) -> None:
    alice = await service.add_device(ALICE, "ALICEDEV")
    log = RoomLog(SERVER)
    message = log.message(ROOM, ALICE, "hello")
    await service.ingest([*log.create_room(ROOM, ALICE), message])
    rng = random.Random(20261126)
    for method, path in _paths(event_id(message)):
        for body in [b"{}", *rng.sample(BODIES, 8)]:
            query = _query(rng)
            url = f"{V3}{path}?{query}" if query else f"{V3}{path}"
            content = body if method in ("PUT", "POST") else None
            r = await http.request(method, url, headers=auth(alice), content=content)
            where = (method, url[:200], body[:60], r.status_code, r.text[:200])
            assert r.status_code < 500, where
            assert r.headers["content-type"].startswith("application/json"), where
            if r.status_code >= 400:
                error = r.json()
                assert isinstance(error["errcode"], str) and error["errcode"].startswith("M_")
                assert isinstance(error["error"], str), where
