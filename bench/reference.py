#!/usr/bin/env python
"""trio-sync against the reference homeserver (Synapse) on the same events: complete and
incremental /sync latency and the long-poll wake, timed interleaved.

    python bench/reference.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]
                              [--synapse-python PATH] [--synapse-db same|sqlite|postgres]

Run by hand; CI does not run it. ``--synapse-python`` is a Python with ``matrix-synapse``
installed; without it a venv is made once under ~/.cache/trio-sync-bench. ``--synapse-db``
is Synapse's database (default ``same``: the backend trio-sync runs on). The history is
built through Synapse's client API, read back from Synapse's database and fed to
``trio-sync serve`` as the room server's output log; both servers then answer the same
users the same events. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor import FloorServer
from reference_log import LinearHistory
from reference_server import (
    EventReader,
    Synapse,
    new_synapse_database,
    register,
    synapse_python,
    synapse_version,
)

from bench import (
    CLOCK_TICK_S,
    IO_TIMEOUT,
    SERVER_NAME,
    Database,
    Http,
    Response,
    Result,
    Server,
    _register,
    bench_main,
    cpu_ticks,
    drop_database,
    line,
    ms,
    new_database,
    pct,
    push,
    say,
    sync_path,
    token_for,
)


@dataclass(frozen=True)
class Sizes:
    rounds: int  # timed requests of each kind, each server
    complete_events: int  # messages in each room of the complete-sync user
    wakes: int  # timed long-poll wakes, each server


FULL = Sizes(100, 200, 100)
QUICK = Sizes(10, 40, 10)
WARM = 3  # untimed rounds first
ROOMS = 10  # rooms of each user but the waker
SMALL = 12  # messages in each room of the other users
SETTLE = 0.01  # seconds between the new event of (c) and the timed requests
PUSH_BATCH = 2000  # log lines per ingest push
BOT = "refbot"  # creates every room and sends every message
#: user → (rooms, messages per room; None: the complete-sync size)
PLAN: dict[str, tuple[int, int | None]] = {
    "complete": (ROOMS, None),
    "quiet": (ROOMS, SMALL),
    "onenew": (ROOMS, SMALL),
    "waker": (1, SMALL),
}


def _mxid(localpart: str) -> str:
    return f"@{localpart}:{SERVER_NAME}"


# --------------------------------------------------------------------------- client


async def call(
    http: Http, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> Any:
    data = None if body is None and method == "GET" else orjson.dumps(body or {})
    resp = await http.request(method, "/_matrix/client/v3" + path, token, data)
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {resp.body[:200]!r}")
    return resp.json()


async def send(http: Http, token: str, room: str, text: str) -> str:
    """A text message through Synapse's client API; its event ID."""
    path = f"/rooms/{quote(room, safe='')}/send/m.room.message/{uuid.uuid4().hex}"
    done = await call(http, "PUT", path, token, {"msgtype": "m.text", "body": text})
    return str(done["event_id"])


async def build_history(port: int, tokens: dict[str, str], sizes: Sizes) -> dict[str, list[str]]:
    """The rooms of every user of ``PLAN`` on Synapse: created by the bot (public chat
    preset, a name), joined by the user, then the bot's messages. Rooms go four at a time;
    a room's events one after another (a linear history). Returns user → room IDs."""
    gate = asyncio.Semaphore(4)

    async def one_room(user: str, k: int, messages: int) -> str:
        async with gate:
            http = await Http.open(port)
            try:
                made = await call(
                    http, "POST", "/createRoom", tokens[BOT],
                    {"preset": "public_chat", "name": f"{user} {k}"},
                )  # fmt: skip
                room = str(made["room_id"])
                await call(http, "POST", f"/join/{quote(room, safe='')}", tokens[user], {})
                for i in range(messages):
                    await send(http, tokens[BOT], room, f"{user} {k} message {i}")
                return room
            finally:
                http.close()

    jobs = {
        user: [one_room(user, k, n or sizes.complete_events) for k in range(count)]
        for user, (count, n) in PLAN.items()
    }
    return {user: list(await asyncio.gather(*rooms)) for user, rooms in jobs.items()}


class Feeder:
    """Brings trio-sync up to date with Synapse: the events Synapse persisted since the
    last call, as ``new_room_event`` log lines, pushed through HTTP ingest."""

    def __init__(self, reader: EventReader, port: int) -> None:
        self.reader, self.port = reader, port
        self.history = LinearHistory()
        self.stream = 0
        self._http: Http | None = None

    async def pending(self) -> tuple[list[str], list[bytes]]:
        """Event IDs and log lines of what Synapse persisted since the last call."""
        events = await self.reader.after(self.stream)
        if events:
            self.stream = events[-1].stream
        lines = [
            line(self.history.message(e.event_id, e.room_id, e.room_version, e.pdu)) for e in events
        ]
        return [e.event_id for e in events], lines

    async def push(self, lines: list[bytes]) -> None:
        if self._http is None:
            self._http = await Http.open(self.port)
        for start in range(0, len(lines), PUSH_BATCH):
            await push(self._http, lines[start : start + PUSH_BATCH])

    async def feed(self) -> list[str]:
        ids, lines = await self.pending()
        await self.push(lines)
        return ids

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


# --------------------------------------------------------------------------- answers


@dataclass
class Side:
    """One server as the load generator sees it."""

    name: str
    port: int
    pid: int  # the server's process
    tokens: dict[str, str]  # localpart → access token


def joined(body: Any) -> dict[str, Any]:
    rooms: dict[str, Any] = body.get("rooms", {}).get("join", {})
    return rooms


def view(body: Any) -> dict[str, tuple[tuple[str, ...], bool, tuple[str, ...]]]:
    """What two answers must agree on: per joined room the timeline's event IDs, its
    ``limited`` flag and the IDs of the state section."""
    return {
        room: (
            tuple(e["event_id"] for e in v.get("timeline", {}).get("events", [])),
            bool(v.get("timeline", {}).get("limited", False)),
            tuple(sorted(e["event_id"] for e in v.get("state", {}).get("events", []))),
        )
        for room, v in joined(body).items()
    }


def timeline(body: Any, room: str) -> list[str]:
    events = joined(body).get(room, {}).get("timeline", {}).get("events", [])
    return [e["event_id"] for e in events]


@dataclass
class Tally:
    """Timings and checks of one run, both servers."""

    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    #: the server's CPU clock ticks (/proc/PID/stat) inside each timed request, summed
    ticks: dict[tuple[str, str], int] = field(default_factory=dict)
    bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    presence: dict[str, int] = field(default_factory=dict)  # answers carrying presence
    extra_answers: dict[str, int] = field(default_factory=dict)  # wake answers without it
    bad: list[str] = field(default_factory=list)

    def record(self, side: str, kind: str, seconds: float, ticks: int = 0) -> None:
        self.times.setdefault((side, kind), []).append(seconds)
        self.ticks[(side, kind)] = self.ticks.get((side, kind), 0) + ticks

    def problem(self, text: str) -> None:
        if len(self.bad) < 20:
            self.bad.append(text)


async def sync(
    http: Http, side: Side, user: str, since: str | None, wait_ms: int | None = None
) -> tuple[Any, Response, float, int]:
    """One ``/sync``: the answer, the response, the round trip in seconds and the CPU
    clock ticks the server's process was charged meanwhile (a sample: ticks are 10 ms)."""
    path = sync_path(since, wait_ms if since else None)
    ticks = cpu_ticks(side.pid)
    t0 = time.perf_counter()
    resp = await http.request("GET", path, side.tokens[user])
    elapsed = time.perf_counter() - t0
    ticks = cpu_ticks(side.pid) - ticks
    if resp.status != 200:
        raise RuntimeError(f"{side.name} /sync for {user}: {resp.status} {resp.body[:200]!r}")
    return resp.json(), resp, elapsed, ticks


# --------------------------------------------------------------------------- figures


async def interleaved(
    sides: list[Side],
    rooms: dict[str, list[str]],
    feeder: Feeder,
    floor_port: int,
    sizes: Sizes,
    t: Tally,
) -> None:
    """Figures (a)-(c): each round, each kind, both servers one after the other (which
    goes first alternates), every request on a keep-alive connection of its own; and
    one ``GET /`` of the bare ASGI app on ``floor_port`` (bench/floor_apps.py)."""
    conns = {(s.name, k): await Http.open(s.port) for s in sides for k in ("a", "b", "c")}
    synapse = sides[0]
    bot = await Http.open(synapse.port)
    floor = await Http.open(floor_port)
    since: dict[tuple[str, str], str] = {}
    try:
        for s in sides:  # first syncs: presence (a device's first sync is online), caches
            for user in ("quiet", "onenew"):
                for _ in range(2):
                    body, *_ = await sync(conns[(s.name, "b")], s, user, since.get((s.name, user)))
                    since[(s.name, user)] = body["next_batch"]
        for i in range(WARM + sizes.rounds):
            order = sides if i % 2 == 0 else sides[::-1]
            warm = i < WARM
            views = {}
            for s in order:  # (a) complete sync
                body, resp, elapsed, ticks = await sync(conns[(s.name, "a")], s, "complete", None)
                views[s.name] = view(body)
                t.bytes[(s.name, "a")] = len(resp.body)
                if not warm:
                    t.record(s.name, "a", elapsed, ticks)
            a, b = (views[s.name] for s in sides)
            if a != b or sorted(a) != sorted(rooms["complete"]):
                t.problem(f"round {i}: complete syncs differ: {_diff(a, b)}")
            for s in order:  # (b) incremental, nothing new
                key = (s.name, "quiet")
                body, resp, elapsed, ticks = await sync(
                    conns[(s.name, "b")], s, "quiet", since[key], 0
                )
                since[key] = body["next_batch"]
                t.presence[s.name] = t.presence.get(s.name, 0) + bool(
                    body.get("presence", {}).get("events")
                )
                if joined(body):
                    t.problem(f"round {i}: {s.name} answered rooms to a nothing-new sync")
                if not warm:
                    t.record(s.name, "b", elapsed, ticks)
            t0 = time.perf_counter()  # the floor
            bare = await floor.request("GET", "/")
            if bare.status != 200:
                raise RuntimeError(f"floor app: {bare.status}")
            if not warm:
                t.record("floor", "floor", time.perf_counter() - t0)
            # (c) one new event: sent through Synapse and fed to trio-sync, not timed
            room = rooms["onenew"][i % len(rooms["onenew"])]
            t0 = time.perf_counter()
            event_id = await send(bot, synapse.tokens[BOT], room, f"new {i}")
            t1 = time.perf_counter()
            fed, lines = await feeder.pending()
            t2 = time.perf_counter()
            await feeder.push(lines)
            if not warm:
                t.record(synapse.name, "send", t1 - t0)
                t.record("trio-sync", "push", time.perf_counter() - t2)
            if event_id not in fed:
                t.problem(f"round {i}: {event_id} not read back from Synapse ({fed})")
            await asyncio.sleep(SETTLE)  # what either server does after the event, done
            for s in order:
                key = (s.name, "onenew")
                body, resp, elapsed, ticks = await sync(
                    conns[(s.name, "c")], s, "onenew", since[key], 0
                )
                since[key] = body["next_batch"]
                got = {r: timeline(body, r) for r in joined(body)}
                if got != {room: [event_id]}:
                    t.problem(f"round {i}: {s.name} incremental answer {got}, not {event_id}")
                if not warm:
                    t.record(s.name, "c", elapsed, ticks)
                t.bytes[(s.name, "c")] = len(resp.body)
    finally:
        for c in [*conns.values(), bot, floor]:
            c.close()


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    for room in sorted(set(a) | set(b)):
        if a.get(room) != b.get(room):
            return f"{room}: {a.get(room)} / {b.get(room)}"[:400]
    return "rooms as expected on both, but not the user's"


async def wakes(sides: list[Side], room: str, feeder: Feeder, sizes: Sizes, t: Tally) -> None:
    """Figure (d): ``waker`` parks ``/sync?timeout=30000`` on both servers; one message is
    sent through Synapse (timed from the send to Synapse's answer read), then read back and
    pushed to trio-sync (timed from the push to trio-sync's answer read)."""
    synapse, ours = sides
    conns = {s.name: await Http.open(s.port) for s in sides}
    bot = await Http.open(synapse.port)
    since: dict[str, str] = {}
    try:
        for s in sides:
            for _ in range(2):
                body, *_ = await sync(conns[s.name], s, "waker", since.get(s.name))
                since[s.name] = body["next_batch"]

        def park(s: Side) -> asyncio.Future[Response]:
            conns[s.name].send("GET", sync_path(since[s.name], 30_000), s.tokens["waker"])
            return asyncio.ensure_future(conns[s.name].read())

        async def answered(s: Side, parked: asyncio.Future[Response], event_id: str) -> None:
            """Read answers (re-parking after any without the event) until one has it."""
            while True:
                resp = await asyncio.wait_for(parked, IO_TIMEOUT)
                body = resp.json()
                since[s.name] = body["next_batch"]
                if event_id in timeline(body, room):
                    return
                t.extra_answers[s.name] = t.extra_answers.get(s.name, 0) + 1
                parked = park(s)

        for k in range(WARM + sizes.wakes):
            polls = {s.name: park(s) for s in sides}
            await asyncio.sleep(0.2)
            for s in sides:  # answered before anything happened (presence): park again
                while polls[s.name].done():
                    since[s.name] = polls[s.name].result().json()["next_batch"]
                    t.extra_answers[s.name] = t.extra_answers.get(s.name, 0) + 1
                    polls[s.name] = park(s)
                    await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            sent = asyncio.ensure_future(send(bot, synapse.tokens[BOT], room, f"wake {k}"))
            resp = await asyncio.wait_for(polls[synapse.name], IO_TIMEOUT)
            syn_elapsed = time.perf_counter() - t0
            event_id = await sent
            body = resp.json()
            since[synapse.name] = body["next_batch"]
            if event_id not in timeline(body, room):
                t.extra_answers[synapse.name] = t.extra_answers.get(synapse.name, 0) + 1
                await answered(synapse, park(synapse), event_id)
                syn_elapsed = time.perf_counter() - t0
            ids, lines = await feeder.pending()
            if event_id not in ids:
                t.problem(f"wake {k}: {event_id} not read back from Synapse ({ids})")
            t1 = time.perf_counter()
            await asyncio.gather(feeder.push(lines), answered(ours, polls[ours.name], event_id))
            ours_elapsed = time.perf_counter() - t1
            if k >= WARM:
                t.record(synapse.name, "d", syn_elapsed)
                t.record(ours.name, "d", ours_elapsed)
    finally:
        for c in [*conns.values(), bot]:
            c.close()


# --------------------------------------------------------------------------- per backend


@dataclass(frozen=True)
class Reference:
    """How to run Synapse: its Python, its version and its database kind (``same``:
    the backend trio-sync runs on)."""

    python: str
    version: str
    database: str


async def _on_synapse(port: int, sizes: Sizes) -> tuple[dict[str, str], dict[str, list[str]]]:
    http = await Http.open(port)
    try:
        tokens = {user: await register(http, user) for user in (BOT, *PLAN)}
    finally:
        http.close()
    return tokens, await build_history(port, tokens, sizes)


async def _measure(
    sides: list[Side],
    rooms: dict[str, list[str]],
    reader: EventReader,
    floor_port: int,
    sizes: Sizes,
) -> tuple[Tally, int]:
    feeder = Feeder(reader, sides[1].port)
    t = Tally()
    try:
        fed = len(await feeder.feed())
        # Keep the load generator's own garbage collector out of the timings.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            say(f"interleaved requests, {sizes.rounds} rounds")
            await interleaved(sides, rooms, feeder, floor_port, sizes, t)
            say(f"long-poll wakes, {sizes.wakes}")
            await wakes(sides, rooms["waker"][0], feeder, sizes, t)
        finally:
            gc.enable()
            gc.unfreeze()
    finally:
        feeder.close()
        await reader.close()
    return t, fed


SIDES = ("Synapse", "trio-sync")
FIGURES = (
    ("a", "complete sync", ">= 10x"),
    ("b", "incremental sync, nothing new, timeout=0", ">= 5x"),
    ("c", "incremental sync, 1 new event, timeout=0", ">= 5x"),
    ("d", "long-poll wake", ""),
)


def report(res: Result, t: Tally, sizes: Sizes, ref: Reference, syn_db: str) -> None:
    labels = {
        "a": f"(a) complete sync, {ROOMS} rooms x {sizes.complete_events} events",
        "b": f"(b) incremental, nothing new, {ROOMS} rooms, timeout=0",
        "c": f"(c) incremental, 1 new event in 1 of {ROOMS} rooms, timeout=0",
        "d": "(d) wake: send (Synapse) / ingest push (trio-sync) -> parked /sync answered",
    }
    for key, _, target in FIGURES:
        syn, ours = t.times.get(("Synapse", key), []), t.times.get(("trio-sync", key), [])
        if not syn or not ours:
            continue
        res.add(
            f"{labels[key]} (n={len(syn)}) p50 / p99 ms: Synapse",
            f"{ms(pct(syn, 50))} / {ms(pct(syn, 99))}",
        )
        res.add(
            "    trio-sync",
            f"{ms(pct(ours, 50))} / {ms(pct(ours, 99))}",
        )
        ratio, ratio99 = pct(syn, 50) / pct(ours, 50), pct(syn, 99) / pct(ours, 99)
        res.add(
            "    Synapse / trio-sync, p50 (p99)",
            f"{ratio:.1f}x ({ratio99:.1f}x)",
            target.replace(">=", "p50 >="),
            None if not target else ratio >= float(target[3:-1]),
            valid=not t.bad,
        )
        if key != "d":
            cpu = [t.ticks[(side, key)] * CLOCK_TICK_S / len(syn) for side in SIDES]
            res.add(
                "    (info) server process CPU per request, mean ms: Synapse; trio-sync",
                f"{ms(cpu[0])}; {ms(cpu[1])}" + (f" ({cpu[0] / cpu[1]:.1f}x)" if cpu[1] else ""),
            )
    bare = t.times.get(("floor", "floor"), [])
    if bare:
        res.add(
            f"(info) floor: bare ASGI app, trio-sync's Hypercorn config, GET / (n={len(bare)}) "
            "p50 / p99 ms",
            f"{ms(pct(bare, 50))} / {ms(pct(bare, 99))}",
        )
        scale = [pct(t.times[("Synapse", k)], 50) / pct(bare, 50) for k in ("b", "c")]
        res.add(
            "    (info) Synapse p50 / floor p50 for (b); (c)",
            f"{scale[0]:.1f}x; {scale[1]:.1f}x",
        )
    send, pushed = t.times.get(("Synapse", "send"), []), t.times.get(("trio-sync", "push"), [])
    if send and pushed:
        res.add(
            "    (info) the new event of (c): Synapse send / trio-sync ingest push, p50 / p99 ms",
            f"{ms(pct(send, 50))} / {ms(pct(send, 99))}; {ms(pct(pushed, 50))} / "
            f"{ms(pct(pushed, 99))}",
        )
    res.notes.append(
        f"Synapse {ref.version} on {syn_db} (python {ref.python}); trio-sync on "
        f"{res.backend}; both on 127.0.0.1, this process timing both"
    )
    for key, what in (("a", "complete"), ("c", "one new event")):
        res.notes.append(
            f"{what} answer bodies: Synapse {t.bytes.get(('Synapse', key), 0) / 1024:.1f} KiB, "
            f"trio-sync {t.bytes.get(('trio-sync', key), 0) / 1024:.1f} KiB"
        )
    res.notes.append(
        "answers agree (joined rooms, timeline IDs and limited, state IDs; the one new "
        "event alone): " + ("yes" if not t.bad else "NO: " + "; ".join(t.bad[:5]))
    )
    res.notes.append(
        "nothing-new answers carrying presence: "
        + ", ".join(f"{k} {v}" for k, v in sorted(t.presence.items()))
        + "; wake answers without the event (re-parked): "
        + (", ".join(f"{k} {v}" for k, v in sorted(t.extra_answers.items())) or "none")
    )
    res.notes.append(
        "wake: Synapse's time includes making, authorising and persisting the event (the "
        "send); trio-sync's the ingest push and its commit (the event already made)"
    )


def run_backend(backend: str, sizes: Sizes, dsn: str, ref: Reference) -> Result:
    res = Result(backend)
    workdir = Path(tempfile.mkdtemp(prefix=f"trio-sync-reference-{backend}-"))
    syn_kind = backend if ref.database == "same" else ref.database
    databases: list[Database] = []
    synapse: Synapse | None = None
    server: Server | None = None
    floor: FloorServer | None = None
    load = os.getloadavg()[0]
    try:
        config, syn_db = new_synapse_database(syn_kind, workdir, dsn)
        databases.append(syn_db)
        synapse = Synapse(ref.python, workdir, SERVER_NAME, config)
        say(f"[{backend}] starting Synapse {ref.version} on {syn_kind}")
        synapse.start()
        say(f"[{backend}] building the history through Synapse")
        t0 = time.perf_counter()
        tokens, rooms = asyncio.run(_on_synapse(synapse.port, sizes))
        built = time.perf_counter() - t0
        db = new_database(backend, workdir, "reference", dsn)
        databases.append(db)
        trio.run(_register, db.url, [_mxid(u) for u in (BOT, *PLAN)])
        server = Server(db.url, workdir)
        server.start()
        assert server.proc is not None
        sides = [
            Side("Synapse", synapse.port, synapse.pid, tokens),
            Side(
                "trio-sync",
                server.port,
                server.proc.pid,
                {u: token_for(_mxid(u)) for u in (BOT, *PLAN)},
            ),
        ]
        floor = FloorServer("bare")
        reader = EventReader(config)
        t, fed = asyncio.run(_measure(sides, rooms, reader, floor.port, sizes))
        res.notes.append(
            f"history: {fed:,} events built through Synapse's client API in {built:.0f} s, "
            "read back from its database and pushed to trio-sync"
        )
        report(res, t, sizes, ref, syn_kind)
        res.notes.append(
            f"load average (1 min): {load:.2f} at start, {os.getloadavg()[0]:.2f} at end"
        )
    except Exception as exc:
        res.broke(exc)
        for name, s in (("Synapse", synapse), ("trio-sync", server)):
            if s is not None:
                res.notes.append(f"{name} log tail:\n" + s.tail())
    finally:
        for process in (floor, server, synapse):
            if process is not None:
                process.stop()
        for d in databases:
            drop_database(d)
        shutil.rmtree(workdir, ignore_errors=True)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--synapse-python")
    parser.add_argument("--synapse-db", choices=["same", "sqlite", "postgres"], default="same")
    ours, rest = parser.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        return 0
    python = synapse_python(ours.synapse_python)
    ref = Reference(python, synapse_version(python), ours.synapse_db)
    say(f"Synapse {ref.version} from {python}")
    return bench_main(
        f"trio-sync against Synapse {ref.version}",
        __doc__.split("\n")[0],
        lambda backend, sizes, dsn: run_backend(backend, sizes, dsn, ref),
        (FULL, QUICK),
        rest,
    )


if __name__ == "__main__":
    sys.exit(main())
