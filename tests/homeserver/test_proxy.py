"""deploy/nginx.conf and deploy/Caddyfile, run by Debian's real nginx and Caddy in front
of trio-sync and a homeserver stand-in: every path lands where trio_sync.http.routemap
says, and a long-poll goes through."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from trio_sync import Service
from trio_sync.http.routemap import READ_ROUTES, proxy_regex

from ..e2e.conftest import ALICE, auth, sync
from .upstream import Upstream, run_upstream

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOM = "!room:example.org"
EVENT = "$event"

#: (sample path, served by trio-sync?). Each READ_ROUTES entry must have a sample.
SAMPLES = [
    ("/_matrix/client/versions", True),
    *[(f"/_matrix/client/{v}/sync", True) for v in ("v3", "r0")],
    *[(f"/_matrix/client/{v}/user/{ALICE}/filter", True) for v in ("v3", "r0")],
    (f"/_matrix/client/v3/user/{ALICE}/filter/0", True),
    *[(f"/_matrix/client/{v}/rooms/{ROOM}/messages", True) for v in ("v3", "r0")],
    (f"/_matrix/client/v3/rooms/{ROOM}/context/{EVENT}", True),
    (f"/_matrix/client/r0/rooms/{ROOM}/event/{EVENT}", True),
    (f"/_matrix/client/v3/rooms/{ROOM}/members", True),
    (f"/_matrix/client/r0/rooms/{ROOM}/joined_members", True),
    *[(f"/_matrix/client/{v}/joined_rooms", True) for v in ("v3", "r0")],
    ("/_matrix/client/v3/keys/changes", True),
    (f"/_matrix/client/v1/rooms/{ROOM}/relations/{EVENT}", True),
    (f"/_matrix/client/v1/rooms/{ROOM}/relations/{EVENT}/m.thread/m.room.message", True),
    (f"/_matrix/client/v1/rooms/{ROOM}/threads", True),
    ("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", True),
    # Everything else is the homeserver's, writes included.
    ("/_matrix/client/v3/login", False),
    (f"/_matrix/client/v3/profile/{ALICE}", False),
    (f"/_matrix/client/v3/rooms/{ROOM}/send/m.room.message/txn1", False),
    (f"/_matrix/client/v3/rooms/{ROOM}/state", False),
    (f"/_matrix/client/v3/rooms/{ROOM}/typing/{ALICE}", False),
    (f"/_matrix/client/v3/rooms/{ROOM}/receipt/m.read/{EVENT}", False),
    (f"/_matrix/client/v3/rooms/{ROOM}/read_markers", False),
    (f"/_matrix/client/v3/user/{ALICE}/account_data/m.direct", False),
    (f"/_matrix/client/v3/presence/{ALICE}/status", False),
    ("/_matrix/client/v3/sendToDevice/m.test/txn1", False),
    ("/_matrix/client/v3/keys/query", False),
    ("/_matrix/client/v3/syncx", False),
    ("/_matrix/client/v3/sync/more", False),
    ("/_matrix/client/v3/versions", False),
    ("/_matrix/client/v2/sync", False),
    ("/_matrix/media/v3/config", False),
    ("/_matrix/federation/v1/version", False),
    ("/_trio_sync/v1/ingest", False),
]


def test_configs_carry_the_route_table() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    located = re.findall(r'location ~ "([^"]+)"', nginx)
    assert located == [proxy_regex()]
    caddy = (DEPLOY / "Caddyfile").read_text()
    assert f"path_regexp trio_sync {proxy_regex()}\n" in caddy
    # Every route of the table is exercised by a sample below, and the samples agree
    # with the table.
    routes = [re.compile(f"^{pattern}$") for pattern, _ in READ_ROUTES]
    for route in routes:
        assert any(route.match(path) for path, _ in SAMPLES), route.pattern
    for path, ours in SAMPLES:
        assert bool(re.match(proxy_regex(), path)) == ours, path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with run_upstream() as up:
        yield up


@asynccontextmanager
async def _serving(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Run ``command`` (a proxy listening on 127.0.0.1:``port``); its URL once it accepts
    connections. The process is terminated (killed after 5 s) on the way out."""
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(partial(trio.run_process, command, check=False, env=env))
        with trio.fail_after(10):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            with trio.move_on_after(5):
                await proc.wait()
            proc.kill()


async def _check(command: list[str], env: dict[str, str] | None = None) -> None:
    """The proxy's own configuration check must pass."""
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, env=env
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


def _binary(name: str) -> str:
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin")
    assert binary is not None, f"{name} is not installed (apt-get install {name})"
    return binary


def _deployed(name: str, addresses: dict[str, str]) -> str:
    """``deploy/NAME`` with each of its example addresses replaced by this test's."""
    text = (DEPLOY / name).read_text()
    for example, actual in addresses.items():
        assert example in text, f"deploy/{name} no longer has {example!r}"
        text = text.replace(example, actual)
    return text


@asynccontextmanager
async def _nginx(trio_sync: int, homeserver: int, tmp_path: Path) -> AsyncIterator[str]:
    """Real nginx with deploy/nginx.conf, its addresses templated to this test's servers."""
    binary = _binary("nginx")
    port = _free_port()
    site = _deployed(
        "nginx.conf",
        {
            "server 127.0.0.1:8009;": f"server 127.0.0.1:{trio_sync};",
            "server 127.0.0.1:8008;": f"server 127.0.0.1:{homeserver};",
            "listen 8080;": f"listen 127.0.0.1:{port};",
        },
    )
    (tmp_path / "site.conf").write_text(site)
    user = "user root root;" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        f"""{user}
daemon off;
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"} warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
{temp}
    include {tmp_path / "site.conf"};
}}
"""
    )
    command = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    await _check([*command[:1], "-t", *command[1:]])
    async with _serving(command, port) as url:
        yield url


@asynccontextmanager
async def _caddy(trio_sync: int, homeserver: int, tmp_path: Path) -> AsyncIterator[str]:
    """Real Caddy with deploy/Caddyfile: the site served over plain HTTP on a free port
    (no certificates), its admin endpoint off, its state under ``tmp_path``."""
    binary = _binary("caddy")
    port = _free_port()
    site = _deployed(
        "Caddyfile",
        {
            "matrix.example.org {": f"http://127.0.0.1:{port} {{",
            "reverse_proxy 127.0.0.1:8009": f"reverse_proxy 127.0.0.1:{trio_sync}",
            "reverse_proxy 127.0.0.1:8008": f"reverse_proxy 127.0.0.1:{homeserver}",
        },
    )
    config = tmp_path / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    command = [binary, "run", "--adapter", "caddyfile", "--config", str(config)]
    await _check([binary, "validate", "--adapter", "caddyfile", "--config", str(config)], env)
    async with _serving(command, port, env) as url:
        yield url


PROXIES = {"nginx": _nginx, "caddy": _caddy}


@pytest.fixture(params=sorted(PROXIES))
async def proxy(
    request: pytest.FixtureRequest, service: Service, upstream: Upstream, tmp_path: Path
) -> AsyncIterator[str]:
    """A real reverse proxy running its deploy/ configuration in front of ``service`` and
    the homeserver stand-in ``upstream``."""
    run = PROXIES[request.param]
    async with run(_port(service.addresses[0]), _port(upstream.url), tmp_path) as url:
        yield url


async def test_each_path_lands_where_the_map_says(
    proxy: str, service: Service, upstream: Upstream
) -> None:
    token = await service.add_device(ALICE, "PHONE")
    async with httpx.AsyncClient(base_url=proxy, timeout=30) as http:
        for path, ours in SAMPLES:
            seen = len(upstream.requests)
            r = await http.get(path, params={"timeout": "0"}, headers=auth(token))
            reached_homeserver = len(upstream.requests) > seen
            assert reached_homeserver == (not ours), (path, r.status_code, r.text)
            if ours:
                assert "served_by" not in r.text, path
            else:
                assert r.json() == {"served_by": "homeserver", "path": path}
        # A real /sync through the proxy, incremental long-poll included.
        first = await sync(http, token)
        again = await sync(http, token, since=first["next_batch"], timeout=50)
        assert again["next_batch"]
