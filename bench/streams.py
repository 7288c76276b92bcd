#!/usr/bin/env python
"""trio-sync benchmark of the per-user streams: to-device and typing wake-ups.

    python bench/streams.py [--backend sqlite|postgres|both] [--postgres DSN] [--quick]

(a) A to-device message, from sending ``PUT /sendToDevice`` to the target device having
read its ``/sync`` response, while 1,000 other clients long-poll: p50 / p99.
(b) A typing change (``PUT /rooms/{roomId}/typing/{userId}``) reaching 100 long-polling
members of the room: the time until all of them have their response, p50 / max over the
rounds.

The server is ``trio-sync serve`` in a subprocess and the load generator is this process,
as in ``bench.py`` (whose server, database and HTTP helpers this script imports). Prints
figures; exits 1 only when a run broke or failed its own checks.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from bench import (
    SERVER_NAME,
    Http,
    Poll,
    Result,
    Server,
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

IO_TIMEOUT = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    idle: int  # clients long-polling that nothing wakes, during (a)
    to_device_n: int  # timed to-device messages
    members: int  # long-polling members of the typing room, during (b)
    typing_n: int  # timed typing changes


FULL = Sizes(idle=1000, to_device_n=200, members=100, typing_n=30)
QUICK = Sizes(idle=100, to_device_n=30, members=20, typing_n=5)

SENDER = f"@sender:{SERVER_NAME}"
TARGET = f"@target:{SERVER_NAME}"
TYPER = f"@typer:{SERVER_NAME}"
ROOM = f"!typing:{SERVER_NAME}"


def idle_users(sizes: Sizes) -> list[str]:
    return [f"@idle{i}:{SERVER_NAME}" for i in range(sizes.idle)]


def members(sizes: Sizes) -> list[str]:
    return [f"@member{i}:{SERVER_NAME}" for i in range(sizes.members)]


async def first_syncs(port: int, users: list[str], batch: int = 50) -> dict[str, str]:
    """Two complete syncs per user: the first brings the device online (a presence
    write that wakes whoever shares a room with it), the second gives a token after all
    of that."""
    out: dict[str, str] = {}
    for rounds in range(2):
        for start in range(0, len(users), batch):
            chunk = users[start : start + batch]
            conns = await asyncio.gather(*(Http.open(port) for _ in chunk))
            try:
                resps = await asyncio.gather(
                    *(
                        c.request("GET", sync_path(), token_for(u))
                        for c, u in zip(conns, chunk, strict=True)
                    )
                )
            finally:
                for c in conns:
                    c.close()
            for user, resp in zip(chunk, resps, strict=True):
                if resp.status != 200:
                    raise RuntimeError(f"sync of {user} failed: {resp.status} {resp.body[:200]!r}")
                if rounds:
                    out[user] = resp.json()["next_batch"]
    return out


async def park(port: int, users: list[str], since: dict[str, str]) -> list[Poll]:
    polls = []
    for start in range(0, len(users), 50):
        chunk = users[start : start + 50]
        conns = await asyncio.gather(*(Http.open(port) for _ in chunk))
        for user, conn in zip(chunk, conns, strict=True):
            poll = Poll(user, conn)
            poll.arm(since[user])
            polls.append(poll)
        await asyncio.sleep(0.03)
    await asyncio.sleep(0.5)
    return polls


class _Polling(Protocol):
    http: Http

    @property
    def task(self) -> asyncio.Future[Any] | None: ...


def close(polls: Sequence[_Polling]) -> None:
    """Stop every poll: its pending read is cancelled and its connection closed."""
    for p in polls:
        if p.task is not None:
            p.task.cancel()
        p.http.close()


async def wake_figure(
    res: Result,
    target: Poll,
    idle: Sequence[Poll],
    rounds: int,
    prepare: Callable[[int], T],
    send: Callable[[T, int], Awaitable[None]],
    answered: Callable[[dict[str, Any], int], bool],
    *,
    label: str,
    limit_s: float,
    note: str,
    wrong: str,
) -> None:
    """One waiting ``target`` woken ``rounds`` times (after 5 warm-up rounds) while the
    ``idle`` polls wait: round ``i`` sends ``prepare(i)`` with ``send`` (timed from just
    before it) and ``answered(body, i)`` says whether the target's answer is exactly what
    was sent. Adds the p50 / p99 figure (p99 at most ``limit_s``) and a note; the figure is
    invalid if any answer was wrong or any idle poll was answered."""
    times: list[float] = []
    bad = 0
    for i in range(5 + rounds):
        await asyncio.sleep(max(0.0, target.sent_at + 0.02 - time.perf_counter()))
        payload = prepare(i)
        t0 = time.perf_counter()
        await send(payload, i)
        assert target.task is not None
        got, received = await asyncio.wait_for(target.task, IO_TIMEOUT)
        answer = got.json()
        bad += got.status != 200 or not answered(answer, i)
        target.arm(answer["next_batch"])
        if i >= 5:  # warm-up
            times.append(received - t0)
    early = sum(1 for p in idle if p.task is not None and p.task.done())
    p99 = pct(times, 99)
    res.add(
        f"{label} ({len(idle)} others waiting, n={len(times)}) p50 / p99 ms",
        f"{ms(pct(times, 50))} / {ms(p99)}",
        f"p99 <= {limit_s * 1000:.0f} ms",
        p99 <= limit_s,
        valid=bad == 0 and early == 0,
    )
    res.notes.append(
        f"{note}: slowest 3 {', '.join(ms(t) for t in sorted(times)[-3:])} ms; "
        f"{bad} {wrong}; {early}/{len(idle)} other polls answered (should be 0)"
    )


async def fig_to_device(port: int, sizes: Sizes, res: Result) -> None:
    users = [*idle_users(sizes), TARGET]
    since = await first_syncs(port, users)
    idle = await park(port, idle_users(sizes), since)
    target = (await park(port, [TARGET], since))[0]
    sender = await Http.open(port)

    async def send(body: bytes, i: int) -> None:
        resp = await sender.request(
            "PUT", f"/_matrix/client/v3/sendToDevice/m.bench/t{i}", token_for(SENDER), body
        )
        if resp.status != 200:
            raise RuntimeError(f"sendToDevice failed: {resp.status} {resp.body[:200]!r}")

    def answered(answer: dict[str, Any], i: int) -> bool:
        events = answer.get("to_device", {}).get("events", [])
        return [e["content"] for e in events] == [{"n": i}]

    try:
        await wake_figure(
            res,
            target,
            idle,
            sizes.to_device_n,
            lambda i: orjson.dumps({"messages": {TARGET: {"BENCH": {"n": i}}}}),
            send,
            answered,
            label="a. to-device PUT -> target answered",
            limit_s=0.020,
            note="to-device",
            wrong="responses without exactly the sent message",
        )
    finally:
        close([*idle, target])
        sender.close()


async def fig_typing(port: int, sizes: Sizes, res: Result) -> None:
    since = await first_syncs(port, [TYPER, *members(sizes)])
    polls = await park(port, members(sizes), since)
    typer = await Http.open(port)
    times: list[float] = []
    bad = 0
    try:
        for i in range(2 + sizes.typing_n):
            typing = i % 2 == 0
            body = orjson.dumps({"typing": typing, "timeout": 30000})
            t0 = time.perf_counter()
            resp = await typer.request(
                "PUT", f"/_matrix/client/v3/rooms/{ROOM}/typing/{TYPER}", token_for(TYPER), body
            )
            if resp.status != 200:
                raise RuntimeError(f"typing failed: {resp.status} {resp.body[:200]!r}")
            answers = await asyncio.wait_for(
                asyncio.gather(*(p.task for p in polls if p.task is not None)), IO_TIMEOUT
            )
            last = max(received for _, received in answers)
            want = [TYPER] if typing else []
            for poll, (got, _) in zip(polls, answers, strict=True):
                answer = got.json()
                room = answer.get("rooms", {}).get("join", {}).get(ROOM, {})
                events = room.get("ephemeral", {}).get("events", [])
                seen = [e["content"]["user_ids"] for e in events if e["type"] == "m.typing"]
                bad += got.status != 200 or seen != [want]
                poll.arm(answer["next_batch"])
            if i >= 2:  # warm-up
                times.append(last - t0)
            await asyncio.sleep(0.3)  # let every member re-arm and park
        worst = max(times)
        res.add(
            f"b. typing PUT -> all {len(polls)} members answered (n={len(times)}) p50 / max ms",
            f"{ms(pct(times, 50))} / {ms(worst)}",
            "all within 200 ms",
            worst <= 0.200,
            valid=bad == 0,
        )
        res.notes.append(f"typing: {bad} member responses without the typing change")
    finally:
        close(polls)
        typer.close()


async def http_figures(server: Server, sizes: Sizes, res: Result) -> None:
    log = RoomLog(SERVER_NAME)
    messages = log.create_room(ROOM, TYPER, "Typing")
    messages += [log.member(ROOM, user, "join") for user in members(sizes)]
    http = await Http.open(server.port)
    try:
        await push(http, [line(m) for m in messages])
    finally:
        http.close()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        say(f"figure a: to-device with {sizes.idle} other polls")
        await fig_to_device(server.port, sizes, res)
        say(f"figure b: typing to {sizes.members} members")
        await fig_typing(server.port, sizes, res)
    finally:
        gc.enable()
        gc.unfreeze()


def run_backend(backend: str, sizes: Sizes, dsn: str) -> Result:
    users = [SENDER, TARGET, TYPER, *idle_users(sizes), *members(sizes)]
    return run_with_server(
        backend, "streams", dsn, users, lambda server, res: http_figures(server, sizes, res)
    )


def main(argv: Sequence[str] | None = None) -> int:
    description = (__doc__ or "").split("\n")[0]
    return bench_main("trio-sync streams bench", description, run_backend, (FULL, QUICK), argv)


if __name__ == "__main__":
    sys.exit(main())
