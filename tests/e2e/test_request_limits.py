"""Request bodies are bounded: ``max_request_body`` (default 8 MiB) for every route, a
tighter 64 KiB for filters; over it is 413 ``M_TOO_LARGE`` — with a Content-Length or
chunked — and nothing is stored."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
import trio

from trio_sync import Config, Service

from .conftest import ALICE, auth, host_port

V3 = "/_matrix/client/v3"
AD = f"{V3}/user/{ALICE}/account_data/m.big"
LIMIT = 256 * 1024


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, max_request_body=LIMIT)


@pytest.fixture
async def token(service: Service) -> str:
    return await service.add_device(ALICE, "PHONE")


def body_of(size: int) -> bytes:
    """A JSON object of about ``size`` bytes."""
    return orjson.dumps({"blob": "x" * max(0, size - 12)})


async def put_chunked(service: Service, path: str, token: str, data: bytes) -> tuple[int, Any]:
    """PUT ``data`` with ``Transfer-Encoding: chunked`` (no Content-Length), 4 KiB a chunk,
    over a plain socket; the status and JSON body of the answer. The server may answer
    (and stop reading) before everything is sent."""
    host, port = host_port(service)
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            await stream.send_all(head.encode())
            for i in range(0, len(data), 4096):
                piece = data[i : i + 4096]
                await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
            await stream.send_all(b"0\r\n\r\n")
        except trio.BrokenResourceError:
            pass  # answered and closed early
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw.partition(b"\r\n\r\n")[2]) < _length(raw):
            chunk = await stream.receive_some()
            if not chunk:
                break
            raw += chunk
    header, _, body = raw.partition(b"\r\n\r\n")
    return int(header.split()[1]), orjson.loads(body[: _length(raw)])


def _length(raw: bytes) -> int:
    for line in raw.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


async def assert_too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    assert r.json()["errcode"] == "M_TOO_LARGE"


async def test_a_body_over_the_limit_is_413(http: httpx.AsyncClient, token: str) -> None:
    r = await http.put(AD, headers=auth(token), content=body_of(LIMIT + 1000))
    await assert_too_large(r)
    r = await http.get(AD, headers=auth(token))
    assert r.status_code == 404  # nothing was stored
    r = await http.put(AD, headers=auth(token), content=body_of(LIMIT - 1000))
    assert r.status_code == 200, r.text


async def test_a_chunked_body_over_the_limit_is_413(service: Service, token: str) -> None:
    status, body = await put_chunked(service, AD, token, body_of(LIMIT * 4))
    assert (status, body["errcode"]) == (413, "M_TOO_LARGE")
    status, body = await put_chunked(service, AD, token, body_of(LIMIT // 2))
    assert (status, body) == (200, {})


async def test_filters_have_a_tighter_limit(http: httpx.AsyncClient, token: str) -> None:
    path = f"{V3}/user/{ALICE}/filter"
    big = orjson.dumps({"room": {"rooms": [f"!r{i:06d}:example.org" for i in range(4000)]}})
    # Over the filters' own limit, under the service's.
    assert 64 * 1024 < len(big) < LIMIT
    r = await http.post(path, headers=auth(token), content=big)
    await assert_too_large(r)
    small = orjson.dumps({"room": {"rooms": ["!r:example.org"]}})
    r = await http.post(path, headers=auth(token), content=small)
    assert r.status_code == 200, r.text


async def test_the_default_limit_is_8_mib() -> None:
    assert Config().max_request_body == 8 * 1024 * 1024
