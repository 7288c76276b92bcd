#!/usr/bin/env python
"""trio-sync benchmark: ingest throughput, /sync latency (also from an old token), long-poll
wake latency and memory.

    python bench/bench.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]

Prints figures (a table per backend, then one summary table); it never asserts. See
bench/README.md for what each figure means. Everything runs on 127.0.0.1: the server under
test is a ``trio-sync serve`` subprocess (figures 2-6) and the load generator is this process
(stdlib asyncio, HTTP/1.1 written by hand so that 1,000 idle long-polls stay cheap).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson
import reads_cost  # bench/reads_cost.py: figure 7
import trio

import trio_sync
from trio_sync import Config, open_service
from trio_sync.roomlog import RoomLog, dumps_lines
from trio_sync.storage import Conn, open_engine
from trio_sync.storage.accounts import add_device

SERVER_NAME = "bench.example"
INGEST_SECRET = "bench-ingest-secret"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
HOST = "127.0.0.1"
IO_TIMEOUT = 30.0  # seconds: bound on any single request/response of the load generator
LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua ship it lunch deploy review merge"
)
WORDS = LOREM.split()


@dataclass(frozen=True)
class Sizes:
    users: int  # community users (user 0 is the probe user of figures 2 and 3)
    rooms: int  # community rooms
    events: int  # log lines (events) in the community log of figure 1
    probe_rooms: int  # rooms the probe user is joined to (figure 2)
    complete_n: int  # timed complete syncs
    incremental_n: int  # timed incremental syncs
    pollers: int  # parked long-polls (distinct users) for figures 4 and 5
    targets: int  # pollers that get woken, in rotation
    wake_n: int  # timed wake-ups
    old_events: int  # events after the old token of figure 6
    old_n: int  # timed incremental syncs of figure 6, each kind
    reads_n: int = 200  # timed requests of figure 7, each kind


FULL = Sizes(200, 300, 50_000, 100, 100, 300, 1000, 8, 200, 100_000, 100)
QUICK = Sizes(40, 60, 3_000, 40, 10, 30, 200, 4, 30, 5_000, 10, reads_n=10)
#: Figure 6: the user's rooms, the timeline limit of its filter, log lines per ingest push.
OLD_ROOMS, OLD_LIMIT, PUSH_BATCH = 20, 5, 5_000


# --------------------------------------------------------------------------- helpers


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def event_id(message: dict[str, Any]) -> str:
    return str(message["new_room_event"]["event"]["_event_id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- workload


@dataclass
class Community:
    log: RoomLog
    messages: list[dict[str, Any]]
    users: list[str]
    rooms: list[str]
    members: dict[str, list[str]]
    probe: str
    probe_rooms: list[str]


def build_community(sizes: Sizes, seed: int = 1) -> Community:
    """A deterministic community: rooms with 5-15 members, then mixed traffic.

    The probe user (user 0) is joined to exactly ``probe_rooms`` rooms; every room has
    history well past the default timeline limit of 10.
    """
    rng = random.Random(seed)
    log = RoomLog(SERVER_NAME)
    users = [f"@user{i}:{SERVER_NAME}" for i in range(sizes.users)]
    probe = users[0]
    rooms = [f"!room{i}:{SERVER_NAME}" for i in range(sizes.rooms)]
    members: dict[str, list[str]] = {}
    out: list[dict[str, Any]] = []
    for i, room in enumerate(rooms):
        chosen = rng.sample(users[1:], rng.randint(4, 14))
        if i < sizes.probe_rooms:
            chosen.insert(rng.randint(1, len(chosen)), probe)
        out += log.create_room(room, chosen[0], f"Room {i}")
        for user in chosen[1:]:
            out.append(log.member(room, user, "join", displayname=user[1:].split(":")[0]))
        members[room] = chosen
    n = 0
    while len(out) < sizes.events:
        room = rng.choice(rooms)
        sender = rng.choice(members[room])
        roll = rng.random()
        n += 1
        if roll < 0.01:
            out.append(log.event(room, sender, "m.room.topic", {"topic": f"topic {n}"}, ""))
        elif roll < 0.015:
            out.append(log.member(room, sender, "join", displayname=f"{sender[1:6]} {n}"))
        else:
            body = " ".join(rng.choices(WORDS, k=rng.randint(3, 16)))
            out.append(log.message(room, sender, body))
    return Community(log, out, users, rooms, members, probe, rooms[: sizes.probe_rooms])


@dataclass
class PollSetup:
    idle_users: list[str]  # every poller, targets first
    targets: list[str]
    wake_rooms: list[str]
    messages: list[dict[str, Any]]


def build_poll_setup(c: Community, sizes: Sizes) -> PollSetup:
    """Poller users: each joined to one quiet community room (not a probe room); the
    first ``targets`` of them also share a private room with a bot, where wake events go."""
    quiet = c.rooms[len(c.probe_rooms) :] or c.rooms
    idle = [f"@idle{i}:{SERVER_NAME}" for i in range(sizes.pollers)]
    out = []
    for i, user in enumerate(idle):
        out.append(c.log.member(quiet[i % len(quiet)], user, "join"))
    bot = f"@wakebot:{SERVER_NAME}"
    wake_rooms = []
    for k in range(sizes.targets):
        room = f"!wake{k}:{SERVER_NAME}"
        out += c.log.create_room(room, bot, f"Wake {k}")
        out.append(c.log.member(room, idle[k], "join"))
        wake_rooms.append(room)
    return PollSetup(idle, idle[: sizes.targets], wake_rooms, out)


@dataclass
class OldSince:
    """Figure 6: a user in ``OLD_ROOMS`` rooms; ``bulk`` messages go between the old token
    and the recent one, then ``last`` (``OLD_LIMIT`` messages in each room) after the recent
    one, so that both incremental syncs answer with the same timelines and no state."""

    user: str
    rooms: list[str]
    setup: list[dict[str, Any]]
    bulk: list[dict[str, Any]]
    last: list[dict[str, Any]]


def build_old_since(c: Community, sizes: Sizes, seed: int = 3) -> OldSince:
    rng = random.Random(seed)
    user = f"@oldsince:{SERVER_NAME}"
    rooms = [f"!old{k}:{SERVER_NAME}" for k in range(OLD_ROOMS)]
    members: dict[str, list[str]] = {}
    setup: list[dict[str, Any]] = []
    for k, room in enumerate(rooms):
        setup += c.log.create_room(room, user, f"Old {k}")
        members[room] = [user, *rng.sample(c.users[1:], 6)]
        setup += [c.log.member(room, u, "join") for u in members[room][1:]]
    bulk = []
    for _ in range(sizes.old_events - OLD_ROOMS * OLD_LIMIT):
        room = rng.choice(rooms)
        body = " ".join(rng.choices(WORDS, k=8))
        bulk.append(c.log.message(room, rng.choice(members[room]), body))
    last = [
        c.log.message(room, rng.choice(members[room]), f"last {i}")
        for i in range(OLD_LIMIT)
        for room in rooms
    ]
    return OldSince(user, rooms, setup, bulk, last)


def token_for(user: str) -> str:
    return "bench_" + user[1:].split(":")[0]


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    url: str
    cleanup_pg: tuple[str, str] | None = None  # (admin DSN, database name)


def pg_url(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))


async def _pg_admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def new_database(backend: str, workdir: Path, tag: str, dsn: str) -> Database:
    if backend == "sqlite":
        return Database(f"sqlite:///{workdir / f'{tag}.db'}")
    name = f"trio_sync_bench_{uuid.uuid4().hex[:10]}_{tag}"
    asyncio.run(_pg_admin(dsn, f'CREATE DATABASE "{name}"'))
    return Database(pg_url(dsn, name), (dsn, name))


async def analyze(url: str) -> None:
    """On PostgreSQL, ``ANALYZE`` the database at ``url``: the planner statistics a
    running database has, which autovacuum gathers within a minute or so of a bulk load
    (a bench measuring straight after its load would otherwise time plans made without
    any). Nothing on SQLite, where trio-sync keeps none."""
    if not url.startswith("postgresql"):
        return
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def drop_database(db: Database) -> None:
    if db.cleanup_pg is None:
        return
    dsn, name = db.cleanup_pg
    try:
        asyncio.run(_pg_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except Exception as exc:  # report, keep cleaning up
        say(f"could not drop database {name}: {exc}")


async def _register(url: str, users: list[str]) -> None:
    async def op(conn: Conn, rows: list[tuple[str, str]]) -> None:
        for user, token in rows:
            await add_device(conn, user, "BENCH", token)

    async with open_engine(url) as engine:
        await engine.write(op, [(u, token_for(u)) for u in users])


async def _ingest_in_process(url: str, raws: list[bytes]) -> tuple[int, float]:
    async with open_service(Config(database=url, listen=None)) as service:
        t0 = time.perf_counter()
        applied = await service.ingest(raws)
        elapsed = time.perf_counter() - t0
    return applied.accepted, elapsed


# --------------------------------------------------------------------------- server


class Server:
    """``trio-sync serve`` in a subprocess of its own; always stopped by ``stop``."""

    def __init__(self, database: str, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        self.database = database
        self.extra_args = list(extra_args)
        self.log_path = workdir / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self.port = free_port()
        argv = [
            sys.executable, "-m", "trio_sync.cli", "serve",
            "--database", self.database,
            "--listen", f"{HOST}:{self.port}",
            "--server-name", SERVER_NAME,
            "--ingest-secret", INGEST_SECRET,
            *self.extra_args,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.log_path.parent, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            if b"listening on" in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, 20)


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``proc`` (unless it has exited) and wait up to ``timeout`` seconds for it to
    end, then kill it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- HTTP client


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Http:
    """One keep-alive HTTP/1.1 connection to the server, requests written by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int):
        self.reader, self.writer, self.port = reader, writer, port

    @classmethod
    async def open(cls, port: int) -> Http:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), IO_TIMEOUT)
        return cls(reader, writer, port)

    def send(
        self, method: str, target: str, token: str | None = None, body: bytes | None = None
    ) -> None:
        head = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))

    async def read(self) -> Response:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for h in header_lines:
            if h:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        return Response(status, body)

    async def request(
        self, method: str, target: str, token: str | None = None, body: bytes | None = None
    ) -> Response:
        self.send(method, target, token, body)
        return await asyncio.wait_for(self.read(), IO_TIMEOUT)

    def close(self) -> None:
        self.writer.close()


async def push(http: Http, lines: list[bytes]) -> Response:
    resp = await http.request("POST", "/_trio_sync/v1/ingest", INGEST_SECRET, b"\n".join(lines))
    if resp.status != 200:
        raise RuntimeError(f"ingest push failed: {resp.status} {resp.body[:200]!r}")
    return resp


def sync_path(
    since: str | None = None, timeout_ms: int | None = None, filter_json: str | None = None
) -> str:
    query = []
    if since:
        query.append(f"since={since}")
    if timeout_ms is not None:
        query.append(f"timeout={timeout_ms}")
    if filter_json is not None:
        query.append(f"filter={quote(filter_json)}")
    return "/_matrix/client/v3/sync" + ("?" + "&".join(query) if query else "")


# --------------------------------------------------------------------------- figures


@dataclass
class Result:
    backend: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # figure, value, target, ok
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
        valid: bool = True,
    ) -> None:
        """``valid`` False (the run's own checks failed) marks the figure CHECK, not ok/MISS."""
        verdict = "CHECK" if not valid else "" if ok is None else ("ok" if ok else "MISS")
        self.rows.append((figure, value, target, verdict))

    def broke(self, exc: Exception) -> None:
        """The run stopped on ``exc``: print its traceback and add an ``ERROR`` row."""
        traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0][:120]
        self.add("ERROR", f"{type(exc).__name__}: {first}")


async def fig_complete(port: int, c: Community, sizes: Sizes, res: Result) -> str:
    http = await Http.open(port)
    token = token_for(c.probe)
    try:
        for _ in range(3):  # warm-up
            warm = await http.request("GET", sync_path(), token)
            if warm.status != 200:
                raise RuntimeError(f"complete sync failed: {warm.status} {warm.body[:200]!r}")
        times = []
        resp = warm
        for _ in range(sizes.complete_n):
            t0 = time.perf_counter()
            resp = await http.request("GET", sync_path(), token)
            times.append(time.perf_counter() - t0)
        body = resp.json()
        rooms = len(body.get("rooms", {}).get("join", {}))
        res.add(
            f"2. complete sync, {rooms} rooms (n={len(times)}) p50 / p99 ms",
            f"{ms(pct(times, 50))} / {ms(pct(times, 99))}",
        )
        res.notes.append(
            f"complete sync body: {len(resp.body) / 1024:.0f} KiB, {rooms} joined rooms"
        )
        return str(body["next_batch"])
    finally:
        http.close()


async def fig_incremental(port: int, c: Community, sizes: Sizes, since: str, res: Result) -> None:
    client = await Http.open(port)
    pusher = await Http.open(port)
    token = token_for(c.probe)
    sync_times: list[float] = []
    push_times: list[float] = []
    seen = 0
    rng = random.Random(2)
    try:
        for i in range(5 + sizes.incremental_n):
            room = c.probe_rooms[i % len(c.probe_rooms)]
            sender = rng.choice([m for m in c.members[room] if m != c.probe] or [c.probe])
            msg = c.log.message(room, sender, f"incremental {i}")
            t0 = time.perf_counter()
            await push(pusher, [line(msg)])
            t1 = time.perf_counter()
            resp = await client.request("GET", sync_path(since, 0), token)
            t2 = time.perf_counter()
            if resp.status != 200:
                raise RuntimeError(f"incremental sync failed: {resp.status} {resp.body[:200]!r}")
            body = resp.json()
            since = body["next_batch"]
            if i < 5:
                continue  # warm-up
            push_times.append(t1 - t0)
            sync_times.append(t2 - t1)
            timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
            seen += any(e.get("event_id") == event_id(msg) for e in timeline.get("events", []))
        p50 = pct(sync_times, 50)
        res.add(
            f"3. incremental sync, 1 new event (n={len(sync_times)}) p50 / p99 ms",
            f"{ms(p50)} / {ms(pct(sync_times, 99))}",
            "p50 <= 5 ms",
            p50 <= 0.005,
            valid=seen == len(sync_times),
        )
        res.add(
            "   (info) HTTP ingest push of 1 event, round trip p50 / p99 ms",
            f"{ms(pct(push_times, 50))} / {ms(pct(push_times, 99))}",
        )
        if seen != len(sync_times):
            res.notes.append(
                f"incremental: new event present in {seen}/{len(sync_times)} responses"
            )
    finally:
        client.close()
        pusher.close()


def cpu_ticks(pid: int) -> int:
    """CPU time process ``pid`` has used so far (user + system), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid``, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1])
    raise RuntimeError("no VmRSS")


async def settled_rss(pid: int, min_s: float = 1.5, max_s: float = 20.0) -> int:
    """RSS of process ``pid`` once its CPU time and RSS stop moving (bounded by
    ``max_s``)."""
    start = time.monotonic()
    cpu, rss, stable = cpu_ticks(pid), rss_kib(pid), 0
    while time.monotonic() - start < max_s:
        await asyncio.sleep(0.25)
        cpu2, rss2 = cpu_ticks(pid), rss_kib(pid)
        stable = stable + 1 if cpu2 - cpu <= 1 and abs(rss2 - rss) <= 16 else 0
        cpu, rss = cpu2, rss2
        if stable >= 4 and time.monotonic() - start >= min_s:
            break
    return rss


@dataclass
class Poll:
    user: str
    http: Http
    task: asyncio.Task[tuple[Response, float]] | None = None
    sent_at: float = 0.0

    def arm(self, since: str) -> None:
        self.http.send("GET", sync_path(since, 60_000), token_for(self.user))
        self.sent_at = time.perf_counter()
        self.task = asyncio.ensure_future(self._receive())

    async def _receive(self) -> tuple[Response, float]:
        resp = await self.http.read()
        return resp, time.perf_counter()


async def bring_online(port: int, users: list[str], since: str, batch: int = 50) -> None:
    """One sync per user before anything is timed: a device's first sync records it as
    online, a presence change that wakes everyone sharing a room with it."""
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        conns = await asyncio.gather(*(Http.open(port) for _ in chunk))
        try:
            resps = await asyncio.gather(
                *(
                    c.request("GET", sync_path(since, 0), token_for(u))
                    for c, u in zip(conns, chunk, strict=True)
                )
            )
        finally:
            for c in conns:
                c.close()
        failed = [r.status for r in resps if r.status != 200]
        if failed:
            raise RuntimeError(f"sync failed while bringing users online: {failed[:5]}")


async def fig_wake_and_memory(
    server: Server, c: Community, setup: PollSetup, sizes: Sizes, res: Result
) -> None:
    port = server.port
    polls: list[Poll] = []
    pusher = await Http.open(port)
    try:
        first = await pusher.request("GET", sync_path(), token_for(setup.idle_users[0]))
        await bring_online(port, setup.idle_users, first.json()["next_batch"])
        first = await pusher.request("GET", sync_path(), token_for(setup.idle_users[0]))
        since = first.json()["next_batch"]

        async def wake(k: int, poll: Poll, label: str) -> tuple[float, float, bool]:
            msg = c.log.message(setup.wake_rooms[k], f"@wakebot:{SERVER_NAME}", label)
            if poll.task is None:
                raise RuntimeError(f"{poll.user} has no poll armed")
            # Give a freshly re-armed poll time to park (targets rotate, so this rarely waits).
            await asyncio.sleep(max(0.0, poll.sent_at + 0.05 - time.perf_counter()))
            t0 = time.perf_counter()
            await push(pusher, [line(msg)])
            t1 = time.perf_counter()
            resp, received = await asyncio.wait_for(poll.task, IO_TIMEOUT)
            body = resp.json()
            room = body.get("rooms", {}).get("join", {}).get(setup.wake_rooms[k], {})
            ok = resp.status == 200 and any(
                e.get("event_id") == event_id(msg)
                for e in room.get("timeline", {}).get("events", [])
            )
            poll.arm(body["next_batch"])
            return received - t0, max(0.0, received - t1), ok

        # Warm-up: the wake path with only the targets connected, then disconnect them.
        warm = [Poll(u, await Http.open(port)) for u in setup.targets]
        try:
            for p in warm:
                p.arm(since)
            await asyncio.sleep(0.3)
            for i in range(3 * len(warm)):
                await wake(i % len(warm), warm[i % len(warm)], f"warm-up {i}")
                await asyncio.sleep(0.02)
        finally:
            for p in warm:
                if p.task:
                    p.task.cancel()
                p.http.close()
        first = await pusher.request("GET", sync_path(), token_for(setup.idle_users[0]))
        since = first.json()["next_batch"]

        # Figure 5: RSS before and after parking every poll.
        rss_before = await settled_rss(server.pid)
        batch = 50
        for start in range(0, len(setup.idle_users), batch):
            users = setup.idle_users[start : start + batch]
            conns = await asyncio.gather(*(Http.open(port) for _ in users))
            for user, http in zip(users, conns, strict=True):
                poll = Poll(user, http)
                poll.arm(since)
                polls.append(poll)
            await asyncio.sleep(0.03)
        rss_after = await settled_rss(server.pid)
        early = sum(1 for p in polls if p.task is not None and p.task.done())
        per_poll = (rss_after - rss_before) / len(polls)
        res.notes.append(
            f"server RSS {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB with "
            f"{len(polls)} polls parked; {early} answered before any wake (should be 0)"
        )

        # Figure 4: wake latency with every poll parked.
        to_send: list[float] = []
        to_return: list[float] = []
        bad = 0
        for i in range(sizes.wake_n):
            k = i % len(setup.targets)
            sent, after_return, ok = await wake(k, polls[k], f"wake {i}")
            to_send.append(sent)
            to_return.append(after_return)
            bad += not ok
            await asyncio.sleep(0.01)
        idle = polls[len(setup.targets) :]
        still = sum(1 for p in idle if p.task is not None and not p.task.done())
        p99 = pct(to_send, 99)
        res.add(
            f"4. wake latency, push sent -> target answered ({len(polls)} waiting, "
            f"n={len(to_send)}) p50 / p99 ms",
            f"{ms(pct(to_send, 50))} / {ms(p99)}",
            "p99 <= 20 ms",
            p99 <= 0.020,
            valid=bad == 0,
        )
        res.add(
            "   (info) wake latency, push returned -> target answered p50 / p99 ms",
            f"{ms(pct(to_return, 50))} / {ms(pct(to_return, 99))}",
        )
        res.add(
            f"5. memory per idle long-poll ({len(polls)} parked) KiB",
            f"{per_poll:.1f}",
            "<= 25 KiB",
            per_poll <= 25,
            valid=early == 0 and still == len(idle),
        )
        slowest = ", ".join(ms(t) for t in sorted(to_send)[-3:])
        res.notes.append(
            f"wake: slowest 3 {slowest} ms; {bad} responses without the pushed event; "
            f"{still}/{len(idle)} idle polls still parked at the end"
        )
    finally:
        for p in polls:
            if p.task is not None:
                p.task.cancel()
            p.http.close()
        pusher.close()
        await asyncio.sleep(0.1)


async def fig_old_since(server: Server, old: OldSince, sizes: Sizes, res: Result) -> None:
    """Incremental syncs from a token ``sizes.old_events`` events back and from one
    ``OLD_ROOMS * OLD_LIMIT`` events back: the same user, rooms, filter and timelines."""
    http = await Http.open(server.port)
    token = token_for(old.user)
    filter_json = orjson.dumps({"room": {"timeline": {"limit": OLD_LIMIT}}}).decode()

    async def next_batch() -> str:
        resp = await http.request("GET", sync_path(filter_json=filter_json), token)
        if resp.status != 200:
            raise RuntimeError(f"complete sync failed: {resp.status} {resp.body[:200]!r}")
        return str(resp.json()["next_batch"])

    async def push_all(messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), PUSH_BATCH):
            await push(http, [line(m) for m in messages[start : start + PUSH_BATCH]])

    try:
        await push_all(old.setup)
        since_old = await next_batch()
        t0 = time.perf_counter()
        await push_all(old.bulk)
        pushed = len(old.bulk) / (time.perf_counter() - t0)
        since_recent = await next_batch()
        await push_all(old.last)
        stale: list[float] = []
        if server.database.startswith("postgresql"):
            # A few syncs with the planner statistics of before the load, then fresh ones,
            # as autovacuum gathers sooner or later after such a load.
            for _ in range(5):
                t0 = time.perf_counter()
                await http.request("GET", sync_path(since_old, 0, filter_json), token)
                stale.append(time.perf_counter() - t0)
            await analyze(server.database)
        expected: dict[str, list[str]] = {r: [] for r in old.rooms}
        for m in old.last:
            expected[m["new_room_event"]["event"]["room_id"]].append(event_id(m))

        times: dict[str, list[float]] = {"old": [], "recent": []}
        sizes_kib: dict[str, float] = {}
        bad: list[str] = []
        for i in range(3 + sizes.old_n):
            for kind, since in (("old", since_old), ("recent", since_recent)):
                t0 = time.perf_counter()
                resp = await http.request("GET", sync_path(since, 0, filter_json), token)
                elapsed = time.perf_counter() - t0
                if resp.status != 200:
                    raise RuntimeError(
                        f"incremental sync failed: {resp.status} {resp.body[:200]!r}"
                    )
                if i < 3:  # warm-up; check the answers once
                    join = resp.json().get("rooms", {}).get("join", {})
                    got = {
                        r: [e["event_id"] for e in v["timeline"]["events"]] for r, v in join.items()
                    }
                    limited = {v["timeline"]["limited"] for v in join.values()}
                    if got != expected or limited != {kind == "old"}:
                        bad.append(kind)
                    sizes_kib[kind] = len(resp.body) / 1024
                    continue
                times[kind].append(elapsed)
        old_p50, recent_p50 = pct(times["old"], 50), pct(times["recent"], 50)
        ratio = old_p50 / recent_p50
        back = f"{len(old.bulk) + len(old.last):,}"
        n = len(times["old"])
        res.add(
            f"6. old since: incremental sync from {back} events back / from {len(old.last)} "
            f"back, p50 ratio ({OLD_ROOMS} rooms, limit {OLD_LIMIT})",
            f"{ratio:.2f}x",
            "<= 3x",
            ratio <= 3,
            valid=not bad,
        )
        res.add(
            f"   (info) since {back} events back (n={n}) p50 / p95 ms",
            f"{ms(old_p50)} / {ms(pct(times['old'], 95))}",
        )
        res.add(
            f"   (info) since {len(old.last)} events back, same timelines (n={n}) p50 / p95 ms",
            f"{ms(recent_p50)} / {ms(pct(times['recent'], 95))}",
        )
        if stale:
            res.add(
                f"   (info) since {back} events back, before ANALYZE (n={len(stale)}) p50 ms",
                ms(pct(stale, 50)),
            )
        res.notes.append(
            f"old since: bodies {sizes_kib.get('old', 0):.1f} KiB (old token) and "
            f"{sizes_kib.get('recent', 0):.1f} KiB (recent); {len(old.bulk):,} events pushed at "
            f"{pushed:,.0f} events/s; timelines as expected: "
            + ("yes" if not bad else f"NO ({', '.join(sorted(set(bad)))})")
        )
    finally:
        http.close()


async def http_figures(
    server: Server, c: Community, setup: PollSetup, old: OldSince, sizes: Sizes, res: Result
) -> None:
    # Keep the load generator's own garbage collector out of the timings: the community's
    # objects are frozen (never scanned again) and collection is paused while measuring.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        await _http_figures(server, c, setup, old, sizes, res)
    finally:
        gc.enable()
        gc.unfreeze()


async def _http_figures(
    server: Server, c: Community, setup: PollSetup, old: OldSince, sizes: Sizes, res: Result
) -> None:
    http = await Http.open(server.port)
    try:
        await push(http, [line(m) for m in setup.messages])
    finally:
        http.close()
    say("figure 2: complete sync")
    since = await fig_complete(server.port, c, sizes, res)
    say("figure 3: incremental sync")
    await fig_incremental(server.port, c, sizes, since, res)
    say(f"figures 4-5: {sizes.pollers} parked long-polls")
    await fig_wake_and_memory(server, c, setup, sizes, res)
    say(f"figure 6: incremental sync from {sizes.old_events:,} events back")
    await fig_old_since(server, old, sizes, res)


# --------------------------------------------------------------------------- per backend


def run_backend(backend: str, sizes: Sizes, dsn: str) -> Result:
    res = Result(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"trio-sync-bench-{backend}-"))
    databases: list[Database] = []
    server: Server | None = None
    try:
        say(f"[{backend}] generating community")
        c = build_community(sizes)
        setup = build_poll_setup(c, sizes)
        old = build_old_since(c, sizes)
        log_path = workdir / "community.jsonl"
        log_path.write_bytes(dumps_lines(c.messages))
        raws = log_path.read_bytes().splitlines()
        res.notes.append(
            f"community: {len(c.users)} users, {len(c.rooms)} rooms, {len(raws)} events "
            f"({log_path.stat().st_size / 2**20:.1f} MiB of log)"
        )

        # Figure 1a: `trio-sync ingest` replaying the log file (what a deployment runs).
        main_db = new_database(backend, workdir, "main", dsn)
        databases.append(main_db)
        say(f"[{backend}] figure 1a: trio-sync ingest of {len(raws)} events")
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "trio_sync.cli", "ingest", str(log_path),
             "--database", main_db.url, "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=workdir, timeout=60 + len(raws) / 100,
        )  # fmt: skip
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-10:]
            raise RuntimeError(
                f"trio-sync ingest exited with {done.returncode}: " + "\n".join(tail)
            )
        cli_rate = len(raws) / (time.perf_counter() - t0)
        res.add(
            "1a. ingest, `trio-sync ingest FILE` (incl. process start) events/s",
            f"{cli_rate:,.0f}",
            ">= 2,000",
            cli_rate >= 2000,
        )

        # Figure 1b: the same log through service.ingest in-process (batches of 500).
        side_db = new_database(backend, workdir, "inproc", dsn)
        databases.append(side_db)
        say(f"[{backend}] figure 1b: service.ingest of {len(raws)} events")
        accepted, elapsed = trio.run(_ingest_in_process, side_db.url, raws)
        rate = accepted / elapsed
        res.add(
            "1b. ingest, service.ingest() in batches of 500, events/s",
            f"{rate:,.0f}",
            ">= 2,000",
            rate >= 2000,
        )
        if accepted != len(raws):
            res.notes.append(f"in-process ingest accepted {accepted}/{len(raws)}")
        drop_database(side_db)
        databases.remove(side_db)

        trio.run(_register, main_db.url, [c.probe, old.user, *setup.idle_users])
        server = Server(main_db.url, workdir)
        server.start()
        asyncio.run(http_figures(server, c, setup, old, sizes, res))
        server.stop()
        server = None

        # Figure 7: relations and fork lookups, in-process on a database of their own.
        reads_db = new_database(backend, workdir, "reads", dsn)
        databases.append(reads_db)
        say(f"[{backend}] figure 7: relations and fork lookups, {sizes.reads_n} rounds")
        figures = trio.run(reads_cost.measure, reads_db.url, sizes.reads_n, 100)
        for name, (statements, p50) in figures.items():
            count = "" if statements < 0 else f", {statements} SQL"
            res.add(f"7. {name} (in-process{count}) p50 ms", ms(p50))
    except Exception as exc:
        res.broke(exc)
        if len(str(exc).splitlines()) > 1:
            res.notes.append(str(exc))
        if server is not None:
            res.notes.append("server log tail:\n" + server.tail())
    finally:
        if server is not None:
            server.stop()
        for db in databases:
            drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)
    return res


# --------------------------------------------------------------------------- output


def run_with_server(
    backend: str,
    tag: str,
    dsn: str,
    users: Sequence[str],
    figures: Callable[[Server, Result], Awaitable[None]],
) -> Result:
    """A bench run on a fresh database of ``backend``: register ``users``, start the
    server, run ``figures`` (asyncio), and always stop the server and drop the database.
    A run that breaks is an ``ERROR`` row with the server log's tail."""
    res = Result(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"trio-sync-{tag}-{backend}-"))
    db: Database | None = None
    server: Server | None = None
    try:
        db = new_database(backend, workdir, tag, dsn)
        trio.run(_register, db.url, list(users))
        server = Server(db.url, workdir)
        server.start()
        asyncio.run(figures(server, res))
    except Exception as exc:
        res.broke(exc)
        if server is not None:
            res.notes.append("server log tail:\n" + server.tail())
    finally:
        if server is not None:
            server.stop()
        if db is not None:
            drop_database(db)
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    sep = "-+-".join("-" * w for w in widths)
    print(f"\n{title}")
    print(" | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print(sep)
    for r in rows:
        print(" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)))


def postgres_problem(dsn: str) -> str | None:
    """Why PostgreSQL at ``dsn`` cannot be used, or None if it answers."""

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return str(exc) or type(exc).__name__
    return None


def bench_main(
    name: str,
    description: str,
    run: Callable[[str, Any, str], Result],
    sizes: tuple[Any, Any],
    argv: Sequence[str] | None = None,
    across: Callable[[list[Result], Any, str], Result | None] | None = None,
) -> int:
    """The command line of a bench script: parse ``--backend``/``--postgres``/``--quick``,
    run ``run(backend, sizes, postgres_dsn)`` per backend (``sizes`` is ``(full, quick)``),
    then ``across(results, sizes, postgres_dsn)`` (figures comparing the backends, when it
    has any to give), print each table and a summary; exit status 1 when a run broke or
    failed its own checks (a missed target is a figure, not a failure)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TRIO_SYNC_BENCH_POSTGRES", DEFAULT_PG),
        help=f"admin DSN used to create throwaway databases (default {DEFAULT_PG})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends:
        problem = postgres_problem(args.postgres)
        if problem is not None:
            print(
                f"PostgreSQL at {args.postgres} is unreachable ({problem}); "
                "running the SQLite half only (start PostgreSQL or pass --postgres DSN)",
                file=sys.stderr,
            )
            backends = ["sqlite"]
    started = time.perf_counter()
    chosen = sizes[1] if args.quick else sizes[0]
    results = []
    for backend in backends:
        t0 = time.perf_counter()
        res = run(backend, chosen, args.postgres)
        results.append(res)
        print_table(
            f"{name} — {backend} ({mode}, {time.perf_counter() - t0:.0f} s)",
            ("figure", "value", "target", ""),
            res.rows,
        )
        for note in res.notes:
            print(f"  * {note}")
        sys.stdout.flush()
    compared = across(results, chosen, args.postgres) if across is not None else None
    if compared is not None:
        results.append(compared)
        print_table(f"{name} — both ({mode})", ("figure", "value", "target", ""), compared.rows)
    rows = [(r.backend, *row) for r in results for row in r.rows]
    print_table(
        f"summary ({mode} mode, {os.cpu_count()} CPUs, "
        f"{time.perf_counter() - started:.0f} s total, trio_sync from "
        f"{Path(trio_sync.__file__).parent.parent})",
        ("backend", "figure", "value", "target", ""),
        rows,
    )
    broken = [row for row in rows if row[1] == "ERROR" or row[-1] == "CHECK"]
    return 1 if broken else 0


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main("trio-sync bench", __doc__.split("\n")[0], run_backend, (FULL, QUICK), argv)


if __name__ == "__main__":
    sys.exit(main())
