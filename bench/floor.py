#!/usr/bin/env python
"""trio-sync against the floor: /sync latency as a ratio to a bare ASGI app under the same
Hypercorn configuration, SQL statements per request, memory per parked poll, fan-out.

    python bench/floor.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]

One run per backend starts three servers (``trio-sync serve``, the bare ASGI floor and a
bare Quart-Trio app, see bench/floor_apps.py) and times their requests interleaved, one
of each kind per round, each kind on a keep-alive connection of its own, so that noise
from the shared machine falls on all of them alike. See bench/README.md.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    CLOCK_TICK_S,
    IO_TIMEOUT,
    SERVER_NAME,
    Database,
    Http,
    Response,
    Result,
    Server,
    analyze,
    bench_main,
    cpu_ticks,
    drop_database,
    free_port,
    line,
    ms,
    new_database,
    pct,
    push,
    say,
    settled_rss,
    stop_process,
    sync_path,
    token_for,
)
from trio_sync import Config, open_service
from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn, open_engine
from trio_sync.storage.accounts import add_device
from trio_sync.sync.request import SyncRequest
from trio_sync.tokens import StreamToken

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sizes:
    rounds: int  # timed requests of each kind
    many_rooms: int  # rooms of the "nothing new, many rooms" user
    complete_events: int  # events per room of the complete-sync user (10 rooms)
    fan_users: int  # distinct users parked in the fan-out room
    fan_n: int  # timed fan-out wakes


FULL = Sizes(400, 500, 200, 1000, 5)
QUICK = Sizes(40, 50, 40, 100, 2)
FEW_ROOMS = 10
#: Rounds of requests before the timed ones.
WARM_UP = 5
#: The fan-out's users sync with this: their devices' presence never times out (to
#: ``offline``) while they are measured, which would wake the whole room early.
OFFLINE = "&set_presence=offline"


def _user(name: str) -> str:
    return f"@{name}:{SERVER_NAME}"


COMPLETE, QUIET10, QUIETN, ONENEW, BOT = (
    _user(n) for n in ("complete", "quiet10", "quietmany", "onenew", "floorbot")
)


@dataclass
class Workload:
    log: RoomLog
    messages: list[dict[str, Any]]
    onenew_rooms: list[str]
    fan_room: str
    fan_users: list[str]


def build(sizes: Sizes) -> Workload:
    """Rooms of their own for each user, so that one figure's traffic never reaches
    another figure's user."""
    log = RoomLog(SERVER_NAME)
    out: list[dict[str, Any]] = []

    def rooms(prefix: str, user: str, n: int, messages: int) -> list[str]:
        ids = [f"!{prefix}{i}:{SERVER_NAME}" for i in range(n)]
        for i, room in enumerate(ids):
            out.extend(log.create_room(room, BOT, f"{prefix} {i}"))
            out.append(log.member(room, user, "join"))
            out.extend(log.message(room, BOT, f"message {k}") for k in range(messages))
        return ids

    rooms("c", COMPLETE, FEW_ROOMS, sizes.complete_events)
    rooms("q", QUIET10, FEW_ROOMS, 12)
    rooms("m", QUIETN, sizes.many_rooms, 3)
    onenew = rooms("n", ONENEW, FEW_ROOMS, 12)
    fan_room = f"!fan:{SERVER_NAME}"
    fans = [_user(f"fan{i}") for i in range(sizes.fan_users)]
    out.extend(log.create_room(fan_room, BOT, "Fan-out"))
    out.extend(log.member(fan_room, u, "join") for u in fans)
    return Workload(log, out, onenew, fan_room, fans)


# --------------------------------------------------------------------------- set-up


async def _load(url: str, w: Workload) -> None:
    async def register(conn: Conn, users: list[str]) -> None:
        for user in users:
            await add_device(conn, user, "BENCH", token_for(user))

    async with open_service(Config(database=url, listen=None)) as service:
        for start in range(0, len(w.messages), 2000):
            await service.ingest(w.messages[start : start + 2000])
    async with open_engine(url) as engine:
        await engine.write(register, [COMPLETE, QUIET10, QUIETN, ONENEW, *w.fan_users])


class FloorServer:
    """bench/floor_apps.py in a subprocess of its own."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "floor_apps.py"), kind, str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if b"listening" not in first:
            self.stop()
            raise RuntimeError(f"{kind} floor app did not start: {first!r}")

    def stop(self) -> None:
        stop_process(self.proc, 10)


# --------------------------------------------------------------------------- timing

Timed = Callable[[], Coroutine[Any, Any, Response]]


async def _sync(
    http: Http, user: str, since: str | None, check: Callable[[Any], bool], extra: str = ""
) -> str:
    path = sync_path(since, 0 if since else None)
    if extra:
        path += ("&" if "?" in path else "?") + extra.lstrip("&")
    resp = await http.request("GET", path, token_for(user))
    if resp.status != 200:
        raise RuntimeError(f"/sync for {user} failed: {resp.status} {resp.body[:200]!r}")
    body = resp.json()
    if not check(body):
        raise RuntimeError(f"/sync for {user}: unexpected answer {resp.body[:300]!r}")
    return str(body["next_batch"])


def _joined(body: Any) -> dict[str, Any]:
    rooms: dict[str, Any] = body.get("rooms", {}).get("join", {})
    return rooms


async def interleaved(
    server: Server, floor: FloorServer, quart: FloorServer, w: Workload, sizes: Sizes
) -> dict[str, list[float]]:
    """One request of each kind per round; returns the round trips of each kind."""
    port = server.port
    conns = {k: await Http.open(port) for k in ("q10", "qn", "one", "complete", "push")}
    bare, small = await Http.open(floor.port), await Http.open(quart.port)
    try:
        since = {}
        for user in (QUIET10, QUIETN, ONENEW):  # first syncs: presence, caches
            since[user] = await _sync(conns["q10"], user, None, lambda b: True)
        for user in (QUIET10, QUIETN, ONENEW):
            since[user] = await _sync(conns["q10"], user, None, lambda b: True)
        times: dict[str, list[float]] = {
            k: [] for k in ("floor", "quart", "q10", "qn", "one", "complete")
        }
        complete_ok = lambda b: len(_joined(b)) == FEW_ROOMS  # noqa: E731
        nothing = lambda b: not _joined(b)  # noqa: E731

        async def timed(kind: str, run: Callable[[], Coroutine[Any, Any, object]]) -> None:
            t0 = time.perf_counter()
            await run()
            times[kind].append(time.perf_counter() - t0)

        async def one_new(i: int) -> None:
            room = w.onenew_rooms[i % len(w.onenew_rooms)]
            msg = w.log.message(room, BOT, f"new {i}")
            await push(conns["push"], [line(msg)])  # not timed

            def has_it(b: Any) -> bool:
                events = _joined(b).get(room, {}).get("timeline", {}).get("events", [])
                return [e.get("event_id") for e in events] == [
                    msg["new_room_event"]["event"]["_event_id"]
                ]

            async def run() -> None:
                since[ONENEW] = await _sync(conns["one"], ONENEW, since[ONENEW], has_it)

            await timed("one", run)

        async def quiet(http: Http, user: str) -> None:
            # The client goes on from the token it was given, as clients do.
            since[user] = await _sync(http, user, since[user], nothing)

        async def get(http: Http, path: str) -> None:
            resp = await http.request("GET", path)
            if resp.status != 200:
                raise RuntimeError(f"{path}: {resp.status}")

        for i in range(sizes.rounds + WARM_UP):
            if i == WARM_UP:
                times = {k: [] for k in times}  # the first rounds warm up
            await timed("floor", lambda: get(bare, "/"))
            await timed("quart", lambda: get(small, "/small"))
            await timed("q10", lambda: quiet(conns["q10"], QUIET10))
            await timed("qn", lambda: quiet(conns["qn"], QUIETN))
            await one_new(i)
            await timed("complete", lambda: _sync(conns["complete"], COMPLETE, None, complete_ok))
        return times
    finally:
        for c in [*conns.values(), bare, small]:
            c.close()


async def _park_all(port: int, paths: list[tuple[str, str | None]]) -> list[Http]:
    conns = []
    for start in range(0, len(paths), 100):
        chunk = paths[start : start + 100]
        opened = await asyncio.gather(*(Http.open(port) for _ in chunk))
        for http, (path, token) in zip(opened, chunk, strict=True):
            http.send("GET", path, token)
        conns.extend(opened)
        await asyncio.sleep(0.02)
    return conns


async def _last_answer(
    conns: list[Http], trigger: Callable[[], Coroutine[Any, Any, object]], pid: int
) -> tuple[float, float, list[Response]]:
    """Seconds from the trigger to the last answer, the server's CPU seconds in that
    time (process ``pid``, to the clock tick), and the answers."""
    reads = [asyncio.ensure_future(c.read()) for c in conns]
    await asyncio.sleep(0.5)
    early = [r for r in reads if r.done()]
    if early:
        what = repr(early[0].exception() or early[0].result().body[:200])
        raise RuntimeError(f"{len(early)} parked request(s) answered before the wake: {what}")
    ticks, t0 = cpu_ticks(pid), time.perf_counter()
    await trigger()
    answers = await asyncio.wait_for(asyncio.gather(*reads), IO_TIMEOUT)
    elapsed = time.perf_counter() - t0
    return elapsed, (cpu_ticks(pid) - ticks) * CLOCK_TICK_S, answers


async def _park_measured(
    pid: int, port: int, paths: list[tuple[str, str | None]]
) -> tuple[list[Http], float]:
    """Park ``paths``, each on a connection of its own, and the RSS (KiB) process ``pid``
    holds per parked request once it settles. The requests stay parked.

    Memory the server freed before (closed connections, collected garbage) stays in its
    allocator and is taken again by the first requests parked: their growth understates
    what they hold. So ``paths`` are parked twice over, and the figure is the growth of
    the second lot, by then beyond what the server ever held; that lot is closed after."""
    conns = await _park_all(port, paths)
    before = await settled_rss(pid)
    second = await _park_all(port, paths)
    per_poll = (await settled_rss(pid) - before) / len(second)
    for c in second:
        c.close()
    await asyncio.sleep(0.5)
    return conns, per_poll


async def bare_parked_rss(bare: FloorServer, n: int) -> float:
    """The floor of :func:`fan_out`'s memory figure: RSS per request parked in the bare
    ASGI app under the same Hypercorn configuration (``/park``), ``n`` of them."""
    conns, per_poll = await _park_measured(bare.proc.pid, bare.port, [("/park", None)] * n)
    for c in conns:
        c.close()
    return per_poll


async def fan_out(
    server: Server, quart: FloorServer, w: Workload, sizes: Sizes, res: Result
) -> dict[str, list[float]]:
    """``fan_users`` parked in one room, one event: time to the last answer; the same
    fan-out through the Quart-Trio floor; the CPU time each server spent on it. Also RSS
    per parked poll."""
    port = server.port
    out: dict[str, list[float]] = {
        "fan": [], "fan_floor": [], "fan_cpu": [], "fan_floor_cpu": [], "rss": []
    }  # fmt: skip
    # Everyone's first sync (presence wakes the room), then a settled token each, over
    # 50 keep-alive connections kept open until the memory is measured: a connection
    # closed just before would be freed while the polls park (Hypercorn holds a closed
    # idle connection for keep_alive_timeout), and the polls would reuse its memory.
    tokens: dict[str, str] = {}
    pool = await asyncio.gather(*(Http.open(port) for _ in range(50)))
    for _ in range(2):
        for start in range(0, len(w.fan_users), len(pool)):
            chunk = w.fan_users[start : start + len(pool)]
            got = await asyncio.gather(
                *(
                    _sync(h, u, tokens.get(u), lambda b: True, OFFLINE)
                    for h, u in zip(pool, chunk, strict=False)
                )
            )
            tokens.update(zip(chunk, got, strict=True))
    await asyncio.sleep(1.0)
    for k in range(sizes.fan_n):
        paths = [(sync_path(tokens[u], 60_000) + OFFLINE, token_for(u)) for u in w.fan_users]
        if k == 0:
            conns, per_poll = await _park_measured(server.pid, port, paths)
            out["rss"].append(per_poll)
            for h in pool:
                h.close()
        else:
            conns = await _park_all(port, paths)
        pusher = await Http.open(port)  # fresh: an idle one may have timed out
        try:
            msg = w.log.message(w.fan_room, BOT, f"fan {k}")
            elapsed, cpu, answers = await _last_answer(
                conns, lambda msg=msg, pusher=pusher: push(pusher, [line(msg)]), server.pid
            )
            want = msg["new_room_event"]["event"]["_event_id"]
            for u, a in zip(w.fan_users, answers, strict=True):
                body = a.json()
                events = _joined(body).get(w.fan_room, {}).get("timeline", {}).get("events", [])
                if a.status != 200 or want not in [e.get("event_id") for e in events]:
                    raise RuntimeError(f"fan-out answer for {u} lacks the event")
                tokens[u] = body["next_batch"]
            out["fan"].append(elapsed)
            out["fan_cpu"].append(cpu)
        finally:
            for c in [*conns, pusher]:
                c.close()
        conns = await _park_all(quart.port, [("/park", None)] * len(w.fan_users))
        waker = await Http.open(quart.port)
        try:
            elapsed, cpu, _ = await _last_answer(
                conns, lambda waker=waker: waker.request("POST", "/wake"), quart.proc.pid
            )
            out["fan_floor"].append(elapsed)
            out["fan_floor_cpu"].append(cpu)
        finally:
            for c in [*conns, waker]:
                c.close()
        await asyncio.sleep(0.5)
    return out


# --------------------------------------------------------------------------- statements


async def statements(url: str, w: Workload) -> dict[str, int]:
    """SQL statements per request of each kind, counted by the engine of an in-process
    service on the same database (authentication included)."""
    out: dict[str, int] = {}
    async with open_service(Config(database=url, listen=None)) as service:
        engine = service.engine

        async def count(user: str, since: StreamToken | None) -> tuple[int, StreamToken]:
            before = getattr(engine, "statements", -1)
            device = await service.auth.authenticate(token_for(user))
            resp = await service.sync.sync(device, SyncRequest(since=since))
            return getattr(engine, "statements", -1) - before, resp.next_batch

        tokens = {}
        for user in (COMPLETE, QUIET10, QUIETN, ONENEW):
            _, tokens[user] = await count(user, None)
        for user in (COMPLETE, QUIET10, QUIETN, ONENEW):
            _, tokens[user] = await count(user, None)
        out["complete"], _ = await count(COMPLETE, None)
        out["q10"], _ = await count(QUIET10, tokens[QUIET10])
        out["qn"], _ = await count(QUIETN, tokens[QUIETN])
        await service.ingest([w.log.message(w.onenew_rooms[0], BOT, "counted")])
        out["one"], _ = await count(ONENEW, tokens[ONENEW])
    return out


# --------------------------------------------------------------------------- per backend


def run_backend(backend: str, sizes: Sizes, dsn: str) -> Result:
    res = Result(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"trio-sync-floor-{backend}-"))
    db: Database | None = None
    servers: list[Any] = []
    try:
        w = build(sizes)
        db = new_database(backend, workdir, "floor", dsn)
        say(f"[{backend}] loading {len(w.messages):,} events")
        trio.run(_load, db.url, w)
        asyncio.run(analyze(db.url))
        server = Server(db.url, workdir)
        server.start()
        servers.append(server)
        floor, quart = FloorServer("bare"), FloorServer("quart")
        servers += [floor, quart]
        say(f"[{backend}] interleaved requests, {sizes.rounds} rounds")
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            times = asyncio.run(interleaved(server, floor, quart, w, sizes))
            say(f"[{backend}] fan-out: {sizes.fan_users} parked in one room")
            fan = asyncio.run(fan_out(server, quart, w, sizes, res))
            bare_rss = asyncio.run(bare_parked_rss(floor, sizes.fan_users))
        finally:
            gc.enable()
            gc.unfreeze()
        for s in servers:
            s.stop()
        servers = []
        counts = trio.run(statements, db.url, w)
        base = pct(times["floor"], 50)
        rows = [
            ("floor", "bare ASGI app under the same Hypercorn config (the floor)", ""),
            ("quart", "Quart-Trio route, small body", ""),
            ("q10", f"incremental, nothing new, {FEW_ROOMS} rooms", "<= 1.3x"),
            ("qn", f"incremental, nothing new, {sizes.many_rooms} rooms", "<= 1.5x"),
            ("one", "incremental, one new event", "<= 1.6x" if backend == "sqlite" else "<= 2.0x"),
            ("complete", f"complete, {FEW_ROOMS} rooms x {sizes.complete_events} events", ""),
        ]
        for key, label, target in rows:
            t = times[key]
            ratio = pct(t, 50) / base
            stmts = f", {counts[key]} SQL" if key in counts and counts[key] >= 0 else ""
            ok = None if not target else ratio <= float(target[3:-1])
            res.add(
                f"{label} (n={len(t)}{stmts}) p50 / p99 ms [x floor]",
                f"{ms(pct(t, 50))} / {ms(pct(t, 99))} [{ratio:.2f}x]",
                target,
                ok,
            )
        last, floor_last = pct(fan["fan"], 50), pct(fan["fan_floor"], 50)
        res.add(
            f"fan-out: {sizes.fan_users} parked in one room, one event, last answer "
            f"(median of {len(fan['fan'])}) ms [x Quart-Trio 1 KiB fan-out]",
            f"{ms(last)} [{last / floor_last:.2f}x, floor {ms(floor_last)}]",
            "<= 1.5x",
            last / floor_last <= 1.5,
        )
        cpu, floor_cpu = pct(fan["fan_cpu"], 50), pct(fan["fan_floor_cpu"], 50)
        res.add(
            f"fan-out: server CPU for the same wake (median of {len(fan['fan_cpu'])}) ms "
            "[x Quart-Trio 1 KiB fan-out]",
            f"{ms(cpu)} [{cpu / floor_cpu:.2f}x, floor {ms(floor_cpu)}]" if floor_cpu else ms(cpu),
        )
        per_poll = fan["rss"][0] if fan["rss"] else float("nan")
        res.add(
            f"memory per parked poll ({sizes.fan_users} parked) KiB "
            "[bare ASGI app parked under the same Hypercorn]",
            f"{per_poll:.1f} [{bare_rss:.1f}]",
            "<= 16 KiB",
            per_poll <= 16,
        )
    except Exception as exc:
        res.broke(exc)
    finally:
        for s in servers:
            s.stop()
        if db is not None:
            drop_database(db)
    return res


def across_backends(results: list[Result], sizes: Sizes, dsn: str) -> Result | None:
    """Complete sync on SQLite and on PostgreSQL in one run, interleaved: the complete-sync
    user's rooms loaded into a database of each, a ``trio-sync serve`` on each, and each
    round one complete sync from each (which goes first alternating). Only after both
    backends' own runs went through."""
    ran = {r.backend for r in results if not any(row[0] == "ERROR" for row in r.rows)}
    if ran != {"sqlite", "postgres"}:
        return None
    res = Result("both")
    workdir = Path(tempfile.mkdtemp(prefix="trio-sync-floor-both-"))
    dbs: list[Database] = []
    servers: list[Server] = []
    try:
        w = build(replace(sizes, many_rooms=0, fan_users=0))
        say(f"[both] complete sync on each backend, interleaved, {sizes.rounds} rounds")
        for backend in ("sqlite", "postgres"):
            db = new_database(backend, workdir, f"both-{backend}", dsn)
            dbs.append(db)
            trio.run(_load, db.url, w)
            asyncio.run(analyze(db.url))
            server = Server(db.url, workdir / backend)
            (workdir / backend).mkdir()
            server.start()
            servers.append(server)
        sqlite, postgres = asyncio.run(_complete_interleaved(servers, sizes.rounds))
        ratio = pct(postgres, 50) / pct(sqlite, 50)
        res.add(
            f"complete sync, {FEW_ROOMS} rooms x {sizes.complete_events} events, interleaved "
            f"(n={len(sqlite)}): PostgreSQL p50 / SQLite p50 ms [ratio]",
            f"{ms(pct(postgres, 50))} / {ms(pct(sqlite, 50))} [{ratio:.2f}x]",
            "<= 1.3x",
            ratio <= 1.3,
        )
    except Exception as exc:
        res.broke(exc)
    finally:
        for s in servers:
            s.stop()
        for db in dbs:
            drop_database(db)
    return res


async def _complete_interleaved(servers: list[Server], rounds: int) -> list[list[float]]:
    conns = [await Http.open(s.port) for s in servers]
    complete_ok = lambda b: len(_joined(b)) == FEW_ROOMS  # noqa: E731
    times: list[list[float]] = [[] for _ in servers]
    try:
        for i in range(WARM_UP + rounds):
            order = range(len(conns)) if i % 2 == 0 else reversed(range(len(conns)))
            for k in order:
                t0 = time.perf_counter()
                await _sync(conns[k], COMPLETE, None, complete_ok)
                if i >= WARM_UP:
                    times[k].append(time.perf_counter() - t0)
    finally:
        for c in conns:
            c.close()
    return times


def main() -> int:
    return bench_main(
        "trio-sync floor bench",
        __doc__.split("\n")[0],
        run_backend,
        (FULL, QUICK),
        across=across_backends,
    )


if __name__ == "__main__":
    sys.exit(main())
