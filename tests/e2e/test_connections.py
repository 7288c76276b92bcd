"""Connection lifetime over raw TCP: ``Connection: close`` and idle keep-alive timeouts."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import trio

from trio_sync import Config, Service, open_service

from .conftest import host_port

VERSIONS = "/_matrix/client/versions"


def request(path: str, *, close: bool) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Accept: application/json"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Reader:
    """Reads HTTP/1.1 responses (with Content-Length bodies) off a raw stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _more(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self.buffer += chunk
        return bool(chunk)

    async def response(self) -> tuple[str, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert await self._more(), f"EOF inside response head: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            assert await self._more(), "EOF inside response body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    async def eof(self) -> None:
        """Wait for the server to close the connection; fail on any unexpected bytes."""
        while await self._more():
            pass
        assert self.buffer == b"", f"unexpected data before EOF: {self.buffer!r}"


async def connect(service: Service) -> trio.SocketStream:
    host, port = host_port(service)
    return await trio.open_tcp_stream(host, port)


async def test_connection_close_really_closes(service: Service) -> None:
    stream = await connect(service)
    async with stream:
        await stream.send_all(request(VERSIONS, close=True))
        reader = Reader(stream)
        with trio.fail_after(5):
            status, headers, body = await reader.response()
            assert status.startswith("HTTP/1.1 200")
            assert b'"versions"' in body
            await reader.eof()
        assert headers.get("connection", "").lower() == "close"


async def test_connection_close_after_an_error_response(service: Service) -> None:
    stream = await connect(service)
    async with stream:
        await stream.send_all(request("/_matrix/client/v3/sync", close=True))
        reader = Reader(stream)
        with trio.fail_after(5):
            status, _, body = await reader.response()
            assert status.startswith("HTTP/1.1 401")
            assert b"M_MISSING_TOKEN" in body
            await reader.eof()


async def test_connection_close_after_a_sync(service: Service) -> None:
    token = await service.add_device("@alice:example.org", "RAW")
    stream = await connect(service)
    async with stream:
        await stream.send_all(request(f"/_matrix/client/v3/sync?access_token={token}", close=True))
        reader = Reader(stream)
        with trio.fail_after(5):
            status, _, body = await reader.response()
            assert status.startswith("HTTP/1.1 200")
            assert b'"next_batch"' in body
            await reader.eof()


async def test_connection_close_reading_only_eof(service: Service) -> None:
    """Read raw bytes until EOF, without parsing: EOF must come within a few seconds."""
    stream = await connect(service)
    async with stream:
        await stream.send_all(request(VERSIONS, close=True))
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"}")


@pytest.fixture
async def short_keep_alive(config: Config) -> AsyncIterator[Service]:
    async with open_service(dataclasses.replace(config, keep_alive_timeout=0.5)) as svc:
        yield svc


async def test_idle_keep_alive_connection_is_released(short_keep_alive: Service) -> None:
    token = await short_keep_alive.add_device("@alice:example.org", "RAW")
    stream = await connect(short_keep_alive)
    async with stream:
        reader = Reader(stream)
        with trio.fail_after(5):
            # Two requests on one connection: it is kept alive between them ...
            for path in (VERSIONS, f"/_matrix/client/v3/sync?access_token={token}"):
                await stream.send_all(request(path, close=False))
                status, headers, _ = await reader.response()
                assert status.startswith("HTTP/1.1 200")
                assert headers.get("connection", "").lower() != "close"
            # ... and closed by the server once idle for the keep-alive timeout.
            await reader.eof()


async def test_idle_connection_without_any_request_is_released(
    short_keep_alive: Service,
) -> None:
    stream = await connect(short_keep_alive)
    async with stream:
        with trio.fail_after(5):
            await Reader(stream).eof()


async def test_connection_outlives_hypercorns_default_request_limit(service: Service) -> None:
    # Hypercorn alone would close this connection after its 1,000th response.
    stream = await connect(service)
    async with stream:
        reader = Reader(stream)
        with trio.fail_after(60):
            for _ in range(1_050):
                await stream.send_all(request(VERSIONS, close=False))
                status, headers, _ = await reader.response()
                assert status.startswith("HTTP/1.1 200")
                assert headers.get("connection", "").lower() != "close"


async def test_request_limit_per_connection_is_configurable(config: Config) -> None:
    async with open_service(dataclasses.replace(config, keep_alive_max_requests=3)) as svc:
        stream = await connect(svc)
        async with stream:
            reader = Reader(stream)
            with trio.fail_after(5):
                closes = []
                for _ in range(3):
                    await stream.send_all(request(VERSIONS, close=False))
                    status, headers, _ = await reader.response()
                    assert status.startswith("HTTP/1.1 200")
                    closes.append(headers.get("connection", "").lower() == "close")
                assert closes == [False, False, True]
                await reader.eof()
