"""The HTTP surface: versions, authentication, parameter errors, CORS, ingest push, fuzz."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest

from trio_sync import Service, StreamToken
from trio_sync.roomlog import RoomLog, dumps_lines

from ..conftest import nio_accepts
from .conftest import (
    ALICE,
    BOB,
    SERVER,
    SYNC_PATH,
    auth,
    event_id,
    rooms_of,
    sync,
    timeline_ids,
    without_age,
)

ROOM = f"!surface:{SERVER}"
INGEST = "/_trio_sync/v1/ingest"
INGEST_AUTH = {"Authorization": "Bearer test-secret"}


@pytest.fixture
async def alice(service: Service) -> str:
    """Alice's access token; she is in one room with a few messages."""
    log = RoomLog(SERVER)
    await service.ingest(
        [*log.create_room(ROOM, ALICE, name="Surface"), log.message(ROOM, ALICE, "hi")]
    )
    return await service.add_device(ALICE, "LAPTOP")


def assert_error(r: httpx.Response, status: int, *errcodes: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["errcode"] in errcodes, body
    assert isinstance(body.get("error"), str)


# --- versions and prefixes --------------------------------------------------------------


async def test_versions(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/versions")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body["versions"], list) and body["versions"]
    assert all(isinstance(v, str) and v.startswith(("r0.", "v1.")) for v in body["versions"])


async def test_r0_sync_is_the_same_as_v3(http: httpx.AsyncClient, alice: str) -> None:
    v3 = await sync(http, alice)
    r = await http.get("/_matrix/client/r0/sync", headers=auth(alice))
    assert r.status_code == 200
    nio_accepts(r.json())
    assert without_age(r.json()) == without_age(v3)
    assert rooms_of(v3, "join") == {ROOM}


# --- authentication ---------------------------------------------------------------------


async def test_missing_token_is_401(http: httpx.AsyncClient, alice: str) -> None:
    assert_error(await http.get(SYNC_PATH), 401, "M_MISSING_TOKEN")


async def test_unknown_token_is_401(http: httpx.AsyncClient, alice: str) -> None:
    r = await http.get(SYNC_PATH, headers=auth("not-a-real-token"))
    assert_error(r, 401, "M_UNKNOWN_TOKEN")
    r = await http.get(SYNC_PATH, params={"access_token": "not-a-real-token"})
    assert_error(r, 401, "M_UNKNOWN_TOKEN")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "token", "Bearer\tabc"])
async def test_malformed_authorization_header_is_401(
    http: httpx.AsyncClient, alice: str, header: str
) -> None:
    r = await http.get(SYNC_PATH, headers={"Authorization": header})
    assert_error(r, 401, "M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")


async def test_token_in_query_parameter(http: httpx.AsyncClient, alice: str) -> None:
    r = await http.get(SYNC_PATH, params={"access_token": alice})
    assert r.status_code == 200
    nio_accepts(r.json())
    assert rooms_of(r.json(), "join") == {ROOM}


async def test_token_of_another_device_sees_the_same_rooms(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    other = await service.add_device(ALICE, "PHONE")
    assert rooms_of(await sync(http, other), "join") == {ROOM}


# --- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    [
        "abc",
        "s1_2",
        "s-1_0_0_0_0_0_0_0_0",
        "s1_0_0_0_0_0_0_0",
        "s1_0_0_0_0_0_0_0_0_0",
        "s1_0_0_0_0_0_0_0_x",
        "t1_2",
        "S1_0_0_0_0_0_0_0_0",
        " s1_0_0_0_0_0_0_0_0",
        "s1_0_0_0_0_0_0_0_0\n",
        "s99999999999999999999_0_0_0_0_0_0_0_0",
        "s9223372036854775808_0_0_0_0_0_0_0_0",
        "s\uff11_0_0_0_0_0_0_0_0",
    ],
)
async def test_malformed_since_is_400(http: httpx.AsyncClient, alice: str, since: str) -> None:
    r = await http.get(SYNC_PATH, params={"since": since}, headers=auth(alice))
    assert_error(r, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", " 5", "0x10", "9" * 40])
async def test_bad_timeout_is_400(http: httpx.AsyncClient, alice: str, value: str) -> None:
    r = await http.get(SYNC_PATH, params={"timeout": value}, headers=auth(alice))
    assert_error(r, 400, "M_INVALID_PARAM")


@pytest.mark.parametrize(("name", "value"), [("full_state", "yes"), ("set_presence", "busy")])
async def test_bad_flags_are_400(
    http: httpx.AsyncClient, alice: str, name: str, value: str
) -> None:
    r = await http.get(SYNC_PATH, params={name: value}, headers=auth(alice))
    assert_error(r, 400, "M_INVALID_PARAM")


async def test_valid_since_from_the_server_is_accepted(http: httpx.AsyncClient, alice: str) -> None:
    body = await sync(http, alice, since=str(StreamToken()))
    assert rooms_of(body, "join") == {ROOM}


# --- unknown paths, methods, CORS --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", SYNC_PATH),
        ("PUT", SYNC_PATH),
        ("DELETE", "/_matrix/client/versions"),
        ("GET", INGEST),
    ],
)
async def test_wrong_method_is_405_with_errcode(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    r = await http.request(method, path)
    assert_error(r, 405, "M_UNRECOGNIZED")


async def test_cors_headers_on_responses(http: httpx.AsyncClient, alice: str) -> None:
    for r in [
        await http.get("/_matrix/client/versions"),
        await http.get(SYNC_PATH, headers=auth(alice)),
        await http.get(SYNC_PATH),
        await http.get("/nope"),
    ]:
        assert r.headers["access-control-allow-origin"] == "*"
        assert "GET" in r.headers["access-control-allow-methods"]
        assert "authorization" in r.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    "path",
    [
        SYNC_PATH,
        "/_matrix/client/versions",
        f"/_matrix/client/v3/user/{quote(ALICE)}/filter",
        "/_matrix/client/v3/some/endpoint/elsewhere",
    ],
)
async def test_cors_preflight(http: httpx.AsyncClient, path: str) -> None:
    r = await http.options(
        path,
        headers={
            "Origin": "https://client.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "GET" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


# --- HTTP ingest push -------------------------------------------------------------------


def _room_lines() -> tuple[RoomLog, list[dict[str, Any]]]:
    log = RoomLog(SERVER)
    room = f"!pushed:{SERVER}"
    return log, [*log.create_room(room, BOB, name="Pushed"), log.member(room, ALICE, "join")]


async def test_ingest_push_is_applied(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    _, messages = _room_lines()
    r = await http.post(INGEST, content=dumps_lines(messages), headers=INGEST_AUTH)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result == {
        "accepted": len(messages),
        "duplicates": 0,
        "rejected": 0,
        "rejects": [],
        "next_batch": str(service.notifier.current),
    }
    body = await sync(http, alice)
    assert f"!pushed:{SERVER}" in rooms_of(body, "join")


async def test_ingest_push_is_idempotent(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    _, messages = _room_lines()
    first = await http.post(INGEST, content=dumps_lines(messages), headers=INGEST_AUTH)
    assert first.status_code == 200
    before = await sync(http, alice)
    again = await http.post(INGEST, content=dumps_lines(messages), headers=INGEST_AUTH)
    assert again.status_code == 200
    assert again.json()["accepted"] == 0
    assert again.json()["duplicates"] == len(messages)
    assert again.json()["rejected"] == 0
    # The sync in between moved only Alice's presence (she came online).
    assert again.json()["next_batch"] == before["next_batch"]
    after = await sync(http, alice)
    assert without_age(after) == without_age(before)


async def test_ingest_push_answers_with_each_rejects_offset_and_reason(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    _, messages = _room_lines()
    lines = [orjson.dumps(m) for m in messages]
    lines.insert(1, b'{"type": "new_room_event"')  # not JSON
    lines.append(b'{"type": "no_such_type"}')
    r = await http.post(INGEST, content=b"\n".join(lines), headers=INGEST_AUTH)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["accepted"], result["rejected"]) == (len(messages), 2)
    assert [reject["offset"] for reject in result["rejects"]] == [1, len(lines) - 1]
    assert all(reject["reason"] for reject in result["rejects"])
    assert "no_such_type" in result["rejects"][1]["reason"]


async def test_ingest_push_as_json_array(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    _, messages = _room_lines()
    r = await http.post(INGEST, content=orjson.dumps(messages), headers=INGEST_AUTH)
    assert r.status_code == 200
    assert r.json()["accepted"] == len(messages)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer test-secret-"}],
)
async def test_ingest_push_wrong_secret_is_401(
    service: Service, http: httpx.AsyncClient, alice: str, headers: dict[str, str]
) -> None:
    _, messages = _room_lines()
    r = await http.post(INGEST, content=dumps_lines(messages), headers=headers)
    assert r.status_code == 401
    assert "errcode" in r.json()
    assert rooms_of(await sync(http, alice), "join") == {ROOM}


async def test_ingest_push_bad_line_is_rejected_rest_applied(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log, messages = _room_lines()
    room = f"!pushed:{SERVER}"
    hello = log.message(room, BOB, "after the garbage")
    payload = (
        dumps_lines(messages)
        + b"{this is not json\n"
        + orjson.dumps({"type": "new_room_event", "new_room_event": {"event": 5}})
        + b"\n"
        + dumps_lines([hello])
    )
    r = await http.post(INGEST, content=payload, headers=INGEST_AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(messages) + 1
    assert r.json()["rejected"] == 2
    assert r.json()["duplicates"] == 0
    body = await sync(http, alice)
    assert timeline_ids(body, "join", room)[-1] == event_id(hello)


@pytest.mark.parametrize("payload", [b"[1, 2", b"{}", b"[", b'"just a string"\n', b"\xff\xfe\n"])
async def test_ingest_push_odd_bodies_never_500(http: httpx.AsyncClient, payload: bytes) -> None:
    r = await http.post(INGEST, content=payload, headers=INGEST_AUTH)
    assert r.status_code in (200, 400), r.text
    assert r.headers["content-type"].startswith("application/json")


# --- no client input is a 500 -----------------------------------------------------------

NASTY_VALUES = [
    "",
    "0",
    "abc",
    "-1",
    "1e3",
    "%00",
    "%ff%fe",
    "%ED%A0%80",
    "%",
    "%zz",
    "s1_2",
    str(StreamToken()),
    str(StreamToken(pdu=3)),
    "s" + "_".join(["9" * 19] * 9),
    "t1_2",
    "{",
    "{}",
    "[]",
    "null",
    "true",
    "TRUE",
    quote('{"room":{"timeline":{"limit":-1}}}'),
    quote('{"room":{"timeline":{"limit":99999999999999999999999}}}'),
    quote('{"room":{"rooms":"!a:b"}}'),
    quote('{"room":{"state":{"types":[1]}}}'),
    quote('{"event_fields":["a\\\\.b"],"event_format":"federation"}'),
    quote("[" * 5000 + "]" * 5000),
    quote("é☃\U0001f600"),
    "9" * 19,
    "%2B1",
]
KEYS = ["since", "timeout", "full_state", "set_presence", "filter", "access_token", "x"]
FIXED_QUERIES = [
    "",
    "&",
    "&&&=",
    "=",
    "since",
    "since=",
    "filter",
    "since[]=1",
    "since=abc&since=s0_0_0_0_0_0_0_0_0",
    "timeout=0&timeout=abc",
    "filter=%7B%22room%22%3A%7B%7D%7D",
    "full_state=true&since=" + str(StreamToken()),
    "set_presence=offline",
    "%FF=%FF",
    "a" * 2000 + "=" + "b" * 2000,
]


def _random_queries(n: int, seed: int = 20240611) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pairs = rng.sample(KEYS, rng.randint(1, 4))
        parts = []
        for key in pairs:
            value = rng.choice(NASTY_VALUES)
            if key == "timeout" and value.isdigit() and len(value) > 1:
                value = "0"  # a valid long timeout would just wait
            parts.append(f"{key}={value}")
        out.append("&".join(parts))
    return out


async def test_no_query_string_is_a_server_error(http: httpx.AsyncClient, alice: str) -> None:
    for query in FIXED_QUERIES + _random_queries(60):
        # A fuzzed since with no timeout never waits; a fuzzed valid timeout is 0.
        url = f"{SYNC_PATH}?{query}" if query else SYNC_PATH
        r = await http.get(url, headers=auth(alice))
        assert r.status_code in (200, 400, 401, 404), (query, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), query
        body = r.json()
        if r.status_code == 200:
            nio_accepts(body)
        else:
            assert isinstance(body["errcode"], str) and body["errcode"].startswith("M_"), query


async def test_no_filter_upload_is_a_server_error(http: httpx.AsyncClient, alice: str) -> None:
    path = f"/_matrix/client/v3/user/{quote(ALICE)}/filter"
    bodies = [
        b"",
        b"null",
        b"[]",
        b"{",
        b"\xff",
        b'{"room": {"timeline": {"limit": 1.5}}}',
        b'{"room": {"timeline": {"limit": 1e400}}}',
        b'{"event_fields": [null]}',
        b'{"presence": {"senders": ["bob"]}}',
        b"[" * 3000 + b"]" * 3000,
        b'{"room": {"include_leave": "yes"}}',
        b'"\\ud800"',
    ]
    for content in bodies:
        r = await http.post(path, content=content, headers=auth(alice))
        assert r.status_code in (200, 400), (content[:40], r.status_code, r.text)
        assert r.json()["errcode"].startswith("M_") if r.status_code == 400 else True
