#!/usr/bin/env python
"""trio-sync benchmark of Simplified Sliding Sync (MSC4186).

    python bench/sliding.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]

(a) First request of a new connection, for a user in 1,000 rooms of 20 events each: one
list, window ``[0, 19]``, ``timeline_limit`` 10, four ``required_state`` types: p50 / p99.
(b) Incremental request after one new event in a room of that window (pushed, not
timed): p50 / p99.
(c) Wake latency: 1,000 connections of 1,000 users long-poll; one event is pushed into a
room of one of 8 target users (in rotation); the time from the push to the target having
read its response: p50 / p99.

The server is ``trio-sync serve`` in a subprocess and the load generator is this process,
as in ``bench.py`` (whose server, database and HTTP helpers this script imports). Prints
figures; exits 1 only when a run broke or failed its own checks.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from streams import close

from bench import (
    SERVER_NAME,
    Http,
    Response,
    Result,
    Server,
    analyze,
    bench_main,
    line,
    ms,
    pct,
    push,
    run_with_server,
    say,
    sync_path,
    token_for,
)
from trio_sync.roomlog import RoomLog

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@dataclass(frozen=True)
class Sizes:
    rooms: int  # rooms of the main user
    events: int  # events per room (creation included)
    samples: int  # timed requests for (a) and (b)
    pollers: int  # long-polling connections during (c)
    wakes: int  # timed wake-ups


FULL = Sizes(rooms=1000, events=20, samples=100, pollers=1000, wakes=200)
QUICK = Sizes(rooms=100, events=20, samples=20, pollers=100, wakes=20)

USER = f"@reader:{SERVER_NAME}"
BOT = f"@bot:{SERVER_NAME}"
REQUEST = {
    "lists": {
        "all": {
            "ranges": [[0, 19]],
            "timeline_limit": 10,
            "required_state": [
                ["m.room.name", ""],
                ["m.room.avatar", ""],
                ["m.room.encryption", ""],
                ["m.room.member", "$LAZY"],
            ],
        }
    }
}


def reader_room(n: int) -> str:
    return f"!reader{n}:{SERVER_NAME}"


def poller(n: int) -> str:
    return f"@poller{n}:{SERVER_NAME}"


def poller_room(n: int) -> str:
    return f"!poller{n}:{SERVER_NAME}"


def build_log(sizes: Sizes) -> tuple[RoomLog, list[bytes]]:
    """The reader's rooms (created by the bot, the reader joined, messages up to
    ``sizes.events``) and one small room per poller."""
    log = RoomLog(SERVER_NAME)
    lines: list[bytes] = []
    for n in range(sizes.rooms):
        room = reader_room(n)
        messages = log.create_room(room, BOT, f"Room {n}")
        messages.append(log.member(room, USER, "join"))
        while len(messages) < sizes.events:
            messages.append(log.message(room, BOT, f"message {len(messages)} in {n}"))
        lines += [line(m) for m in messages]
    for n in range(sizes.pollers):
        room = poller_room(n)
        messages = log.create_room(room, BOT)
        messages.append(log.member(room, poller(n), "join"))
        lines += [line(m) for m in messages]
    return log, lines


async def sliding(
    http: Http,
    user: str,
    body: dict[str, object],
    pos: str | None = None,
    wait_ms: int | None = None,
) -> Response:
    query = []
    if pos is not None:
        query.append(f"pos={pos}")
    if wait_ms is not None:
        query.append(f"timeout={wait_ms}")
    target = PATH + ("?" + "&".join(query) if query else "")
    resp = await http.request("POST", target, token_for(user), orjson.dumps(body))
    if resp.status != 200:
        raise RuntimeError(f"sliding sync failed: {resp.status} {resp.body[:200]!r}")
    return resp


async def fig_first_and_incremental(port: int, log: RoomLog, sizes: Sizes, res: Result) -> None:
    http = await Http.open(port)
    pusher = await Http.open(port)
    try:
        firsts: list[float] = []
        body: dict[str, object] = {}
        for i in range(sizes.samples + 3):
            t0 = time.perf_counter()
            body = (await sliding(http, USER, {**REQUEST, "conn_id": f"c{i}"})).json()
            if i >= 3:
                firsts.append(time.perf_counter() - t0)
        rooms = body["rooms"]
        assert isinstance(rooms, dict)
        valid = len(rooms) == 20 and all(len(r["timeline"]) == 10 for r in rooms.values())
        res.add(
            f"(a) first request, {sizes.rooms} rooms, window 20, p50 / p99",
            f"{ms(pct(firsts, 50))} / {ms(pct(firsts, 99))}",
            "p50 ≤ 100 ms",
            pct(firsts, 50) <= 0.100,
            valid,
        )
        res.notes.append(f"(a) response size {len(orjson.dumps(body)):,} bytes, 20 rooms")
        pos = str(body["pos"])
        conn = f"c{sizes.samples + 2}"
        window = [r for r in rooms]
        incrementals: list[float] = []
        got_event = True
        for i in range(sizes.samples + 3):
            room = window[i % len(window)]
            await push(pusher, [line(log.message(room, BOT, f"live {i}"))])
            t0 = time.perf_counter()
            out = (await sliding(http, USER, {**REQUEST, "conn_id": conn}, pos=pos)).json()
            elapsed = time.perf_counter() - t0
            pos = out["pos"]
            got_event = got_event and room in out["rooms"]
            if i >= 3:
                incrementals.append(elapsed)
        res.add(
            "(b) incremental, one new event in the window, p50 / p99",
            f"{ms(pct(incrementals, 50))} / {ms(pct(incrementals, 99))}",
            "p50 ≤ 5 ms",
            pct(incrementals, 50) <= 0.005,
            got_event,
        )
        # The same for /sync (timeline limit 10), in the same run: the floor to compare with.
        filt = '{"room":{"timeline":{"limit":10}}}'
        since = (await http.request("GET", sync_path(filter_json=filt), token_for(USER))).json()[
            "next_batch"
        ]
        plain: list[float] = []
        for i in range(sizes.samples + 3):
            room = window[i % len(window)]
            await push(pusher, [line(log.message(room, BOT, f"sync {i}"))])
            t0 = time.perf_counter()
            resp = await http.request("GET", sync_path(since, 0, filt), token_for(USER))
            elapsed = time.perf_counter() - t0
            since = resp.json()["next_batch"]
            if i >= 3:
                plain.append(elapsed)
        res.add(
            "(b) the same with GET /sync (floor, same run), p50 / p99",
            f"{ms(pct(plain, 50))} / {ms(pct(plain, 99))}",
        )
        res.notes.append(
            f"(b) sliding ÷ /sync incremental p50: {pct(incrementals, 50) / pct(plain, 50):.2f}x"
        )
    finally:
        http.close()
        pusher.close()


@dataclass
class Poll:
    user: str
    http: Http
    pos: str = ""
    task: asyncio.Task[tuple[Response, float]] | None = None

    def arm(self) -> None:
        body = orjson.dumps({"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}})
        self.http.send("POST", f"{PATH}?pos={self.pos}&timeout=60000", token_for(self.user), body)
        self.task = asyncio.ensure_future(self._receive())

    async def _receive(self) -> tuple[Response, float]:
        resp = await self.http.read()
        return resp, time.perf_counter()


async def fig_wake(port: int, log: RoomLog, sizes: Sizes, res: Result) -> None:
    polls: list[Poll] = []
    pusher = await Http.open(port)
    try:
        for start in range(0, sizes.pollers, 50):
            chunk = [poller(n) for n in range(start, min(start + 50, sizes.pollers))]
            conns = await asyncio.gather(*(Http.open(port) for _ in chunk))
            first = await asyncio.gather(
                *(
                    sliding(c, u, {"lists": {"all": {"ranges": [[0, 9]], "timeline_limit": 1}}})
                    for c, u in zip(conns, chunk, strict=True)
                )
            )
            for user, conn, resp in zip(chunk, conns, first, strict=True):
                poll = Poll(user, conn, resp.json()["pos"])
                polls.append(poll)
        for poll in polls:
            poll.arm()
        await asyncio.sleep(1.0)
        early = sum(1 for p in polls if p.task is not None and p.task.done())
        targets = list(range(min(8, sizes.pollers)))
        latencies: list[float] = []
        missed = 0
        for i in range(sizes.wakes):
            n = targets[i % len(targets)]
            poll = polls[n]
            assert poll.task is not None
            t0 = time.perf_counter()
            await push(pusher, [line(log.message(poller_room(n), BOT, f"wake {i}"))])
            resp, done = await asyncio.wait_for(poll.task, 30)
            latencies.append(done - t0)
            out = resp.json()
            if poller_room(n) not in out.get("rooms", {}):
                missed += 1
            poll.pos = out["pos"]
            poll.arm()
        still = sum(1 for p in polls if p.task is not None and not p.task.done())
        res.add(
            f"(c) wake latency, {sizes.pollers} connections waiting, p50 / p99",
            f"{ms(pct(latencies, 50))} / {ms(pct(latencies, 99))}",
            "p99 ≤ 20 ms",
            pct(latencies, 99) <= 0.020,
            early == 0 and missed == 0,
        )
        res.notes.append(
            f"(c) answered before any push: {early}; woken without the event: {missed}; "
            f"parked at the end: {still} of {len(polls)}"
        )
    finally:
        close(polls)
        pusher.close()


async def http_figures(
    server: Server, log: RoomLog, lines: list[bytes], sizes: Sizes, res: Result
) -> None:
    http = await Http.open(server.port)
    try:
        for start in range(0, len(lines), 5000):
            await push(http, lines[start : start + 5000])
    finally:
        http.close()
    await analyze(server.database)
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        say(f"figures a, b: a user in {sizes.rooms} rooms")
        await fig_first_and_incremental(server.port, log, sizes, res)
        say(f"figure c: {sizes.pollers} connections waiting")
        await fig_wake(server.port, log, sizes, res)
    finally:
        gc.enable()
        gc.unfreeze()


def run_backend(backend: str, sizes: Sizes, dsn: str) -> Result:
    users = [USER, BOT, *(poller(n) for n in range(sizes.pollers))]
    log, lines = build_log(sizes)
    return run_with_server(
        backend,
        "sliding",
        dsn,
        users,
        lambda server, res: http_figures(server, log, lines, sizes, res),
    )


def main(argv: Sequence[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    return bench_main("trio-sync sliding sync bench", description, run_backend, (FULL, QUICK), argv)


if __name__ == "__main__":
    sys.exit(main())
