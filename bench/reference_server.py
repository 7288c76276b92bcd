"""The reference homeserver (Synapse) for bench/reference.py: installed, configured and
started at run time, with its users registered and its events read back.

Nothing of Synapse is kept in the repository: :func:`synapse_python` finds (or makes) a
Python with ``matrix-synapse`` installed, :class:`Synapse` generates a config in a work
directory, overrides what the bench needs (one plain-HTTP client listener on 127.0.0.1,
the database, rate limits and the ``/sync`` response cache off, quiet logging) and runs
``synapse.app.homeserver`` in a subprocess of its own. :class:`EventReader` reads the events
Synapse persisted, in stream order, from its own ``events``/``event_json`` tables.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from bench import HOST, Database, Http, _pg_admin, free_port, pg_url, say, stop_process

CACHE_VENV = Path.home() / ".cache" / "trio-sync-bench" / "synapse-venv"
SHARED_SECRET = "reference-bench-shared-secret"
#: Every rate limit Synapse applies to a client of its own, lifted out of the way.
_NO_LIMIT = {"per_second": 1_000_000, "burst_count": 1_000_000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _NO_LIMIT,
    "rc_registration": _NO_LIMIT,
    "rc_login": {"address": _NO_LIMIT, "account": _NO_LIMIT, "failed_attempts": _NO_LIMIT},
    "rc_joins": {"local": _NO_LIMIT, "remote": _NO_LIMIT},
    "rc_joins_per_room": _NO_LIMIT,
    "rc_invites": {"per_room": _NO_LIMIT, "per_user": _NO_LIMIT, "per_issuer": _NO_LIMIT},
    "rc_presence": {"per_user": _NO_LIMIT},
    "rc_room_creation": _NO_LIMIT,
    "rc_admin_redaction": _NO_LIMIT,
}


def synapse_python(given: str | None) -> str:
    """The Python to run Synapse with: ``given``, or the cached venv's (``CACHE_VENV``),
    made with ``pip install matrix-synapse[postgres]`` the first time (minutes)."""
    if given:
        return given
    python = CACHE_VENV / "bin" / "python"
    if python.exists() and _version(str(python)):
        return str(python)
    say(f"installing matrix-synapse into {CACHE_VENV} (once)")
    CACHE_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(CACHE_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "matrix-synapse[postgres]"], check=True
    )
    return str(python)


def _version(python: str) -> str | None:
    done = subprocess.run(
        [python, "-c", "import synapse; print(synapse.__version__)"],
        capture_output=True, text=True, env=_clean_env(), cwd="/",
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def synapse_version(python: str) -> str:
    version = _version(python)
    if version is None:
        raise RuntimeError(f"{python} cannot import synapse")
    return version


def _clean_env() -> dict[str, str]:
    """The environment without PYTHONPATH: Synapse imports only its own venv."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def new_synapse_database(kind: str, workdir: Path, dsn: str) -> tuple[dict[str, Any], Database]:
    """Synapse's ``database`` config for a fresh ``sqlite`` file or a fresh PostgreSQL
    database (UTF-8, C collation, as Synapse requires) made through the admin ``dsn``; and
    the :class:`~bench.Database` that ``drop_database`` removes afterwards."""
    if kind == "sqlite":
        path = workdir / "synapse.db"
        return {"name": "sqlite3", "args": {"database": str(path)}}, Database(f"sqlite:///{path}")
    name = f"trio_sync_bench_{uuid.uuid4().hex[:10]}_synapse"
    asyncio.run(
        _pg_admin(
            dsn,
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0",
        )
    )
    parts = urlsplit(dsn)
    args = {
        "user": parts.username or "postgres",
        "host": parts.hostname or HOST,
        "port": parts.port or 5432,
        "database": name,
        "cp_min": 5,
        "cp_max": 10,
    }
    if parts.password:
        args["password"] = parts.password
    return {"name": "psycopg2", "args": args}, Database(pg_url(dsn, name), (dsn, name))


class Synapse:
    """``synapse.app.homeserver`` in a subprocess of its own; always stopped by ``stop``."""

    def __init__(
        self, python: str, workdir: Path, server_name: str, database: dict[str, Any]
    ) -> None:
        self.python = python
        self.dir = workdir / "synapse"
        self.server_name = server_name
        self.database = database
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.out_path = self.dir / "synapse.out"

    def _configure(self) -> list[str]:
        """Generate Synapse's config, then write the overrides (JSON is YAML) that a
        second ``--config-path`` lays over it; return both paths."""
        self.dir.mkdir(parents=True, exist_ok=True)
        generated = self.dir / "homeserver.yaml"
        subprocess.run(
            [self.python, "-m", "synapse.app.homeserver",
             "--server-name", self.server_name, "--config-path", str(generated),
             "--data-directory", str(self.dir / "data"),
             "--generate-config", "--report-stats=no"],
            check=True, capture_output=True, env=_clean_env(), cwd=self.dir,
        )  # fmt: skip
        log_config = self.dir / "log.yaml"
        log_config.write_bytes(
            orjson.dumps(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "formatter": "plain",
                            "filename": str(self.dir / "homeserver.log"),
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        self.port = free_port()
        overrides = {
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": [HOST],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": self.database,
            "log_config": str(log_config),
            "registration_shared_secret": SHARED_SECRET,
            "enable_registration": False,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": True},
            # Otherwise a repeated request (the same complete sync) is answered from a
            # cache of answers for two minutes.
            "caches": {"sync_response_cache_duration": 0},
            **RATE_LIMITS,
        }
        extra = self.dir / "bench-overrides.yaml"
        extra.write_bytes(orjson.dumps(overrides, option=orjson.OPT_INDENT_2))
        return [str(generated), str(extra)]

    def start(self, timeout: float = 300.0) -> None:
        configs = self._configure()
        argv = [self.python, "-m", "synapse.app.homeserver"]
        for path in configs:
            argv += ["--config-path", path]
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.dir, env=_clean_env(), start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/_matrix/client/versions")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"Synapse did not start within {timeout}s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, n: int = 20) -> str:
        lines: list[str] = []
        for path in (self.out_path, self.dir / "homeserver.log"):
            with suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-n:]
        return "\n".join(lines)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, 30)


async def register(http: Http, localpart: str) -> str:
    """Register ``localpart`` through Synapse's shared-secret admin API; its access token."""
    nonce = (await http.request("GET", "/_synapse/admin/v1/register")).json()["nonce"]
    password = "bench-" + localpart
    mac = hmac.new(
        SHARED_SECRET.encode(),
        b"\x00".join([nonce.encode(), localpart.encode(), password.encode(), b"notadmin"]),
        hashlib.sha1,
    ).hexdigest()
    body = {"nonce": nonce, "username": localpart, "password": password, "admin": False}
    resp = await http.request(
        "POST", "/_synapse/admin/v1/register", body=orjson.dumps({**body, "mac": mac})
    )
    if resp.status != 200:
        raise RuntimeError(f"registering {localpart} failed: {resp.status} {resp.body[:200]!r}")
    return str(resp.json()["access_token"])


@dataclass(frozen=True)
class Persisted:
    """One event as Synapse stored it: stream position, ID, room, room version, PDU JSON
    (without ``room_id`` for a create event of a room version whose room ID is its
    hash)."""

    stream: int
    event_id: str
    room_id: str
    room_version: str
    pdu: dict[str, Any]


_EVENTS_AFTER = (
    "SELECT e.stream_ordering, e.event_id, e.room_id, r.room_version, j.json "
    "FROM events e JOIN event_json j ON j.event_id = e.event_id "
    "JOIN rooms r ON r.room_id = e.room_id "
    "WHERE e.stream_ordering > {p} AND NOT e.outlier AND e.rejection_reason IS NULL "
    "ORDER BY e.stream_ordering"
)


class EventReader:
    """Reads the events Synapse persisted after a stream position, in stream order, from
    its database (``events`` joined with ``event_json`` and ``rooms``). ``after`` returns
    only what is committed when it runs."""

    def __init__(self, database: dict[str, Any]) -> None:
        self.database = database
        self._pg: asyncpg.Connection | None = None

    async def after(self, stream: int) -> list[Persisted]:
        args = self.database["args"]
        if self.database["name"] == "sqlite3":
            uri = f"file:{args['database']}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True)) as conn:
                rows = conn.execute(_EVENTS_AFTER.format(p="?"), (stream,)).fetchall()
        else:
            if self._pg is None:
                self._pg = await asyncpg.connect(
                    host=args["host"], port=args["port"], user=args["user"],
                    password=args.get("password"), database=args["database"], timeout=10,
                )  # fmt: skip
            rows = await self._pg.fetch(_EVENTS_AFTER.format(p="$1"), stream)
        return [
            Persisted(int(s), str(e), str(r), str(v), orjson.loads(j)) for s, e, r, v, j in rows
        ]

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
