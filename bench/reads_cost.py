"""Figure 7 of ``bench.py``: what the relations lookup costs a page of history, and what
the fork lookup costs an incremental ``/sync``.

An in-process service (``open_service`` with a real Hypercorn listener on 127.0.0.1) on a
fresh database; httpx in the same Trio loop is the client. Statements are counted by the
service's engine around each request (``Engine.statements``; the token comes from the
cache, so a request's count is its own). Timings are in-process round trips, p50 over the
rounds, the plain and the related request alternating so that noise falls on both alike.

* relations: ``/messages?dir=b&limit=20`` and a complete ``/sync`` (timeline limit 20) in a
  room of plain messages and in a room where every page holds thread roots with replies,
  edits and reactions (``unsigned.m.relations`` bundled); the bundle query alone
  (``relations.children`` for the 20 event IDs of a page) timed on its own.
* forks: an incremental ``/sync`` after one new event, in a room with no forked event and
  after one forked event (its room's access is then read from the state rows); the fork
  lookup alone (``rooms_with_forks`` over the user's rooms) timed on its own.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from trio_sync import Config, Service, open_service
from trio_sync.roomlog import RoomLog
from trio_sync.storage import Conn
from trio_sync.storage import relations as rel
from trio_sync.storage.visibility import rooms_with_forks

SERVER = "bench.example"
USER = f"@reader:{SERVER}"
BOT = f"@bot:{SERVER}"
PLAIN, RELATED = f"!plain:{SERVER}", f"!related:{SERVER}"
QUIET, FORKED = f"!quiet:{SERVER}", f"!forked:{SERVER}"
#: Rooms the incremental-sync user is in besides the ones that get the new event.
OTHER_ROOMS = 20
PAGE = 20


def _related(log: RoomLog, sender: str, rel_type: str, parent: str, **extra: Any) -> Any:
    content: dict[str, Any] = {"msgtype": "m.text", "body": "r", **extra}
    content["m.relates_to"] = {"rel_type": rel_type, "event_id": parent}
    return log.event(RELATED, sender, "m.room.message", content)


def _build(log: RoomLog, events: int) -> list[Any]:
    out: list[Any] = []
    for room in (PLAIN, RELATED, QUIET, FORKED):
        out += log.create_room(room, BOT, room[1:8])
        out.append(log.member(room, USER, "join"))
    out += [log.message(PLAIN, BOT, f"plain {i}") for i in range(events)]
    root = ""
    for i in range(events):
        kind = i % 4
        if kind == 0 or not root:
            message = log.message(RELATED, BOT, f"root {i}")
            root = message["new_room_event"]["event"]["_event_id"]
        elif kind == 1:
            message = _related(log, USER, "m.thread", root)
        elif kind == 2:
            new = {"msgtype": "m.text", "body": "edited"}
            message = _related(log, BOT, "m.replace", root, **{"m.new_content": new})
        else:
            message = log.event(
                RELATED,
                USER,
                "m.reaction",
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "+"}},
            )
        out.append(message)
    for room in (QUIET, FORKED):
        out += [log.message(room, BOT, f"m {i}") for i in range(PAGE)]
    for n in range(OTHER_ROOMS):
        room = f"!other{n}:{SERVER}"
        out += log.create_room(room, BOT, f"other {n}")
        out.append(log.member(room, USER, "join"))
        out += [log.message(room, BOT, "x") for _ in range(3)]
    return out


def _forked(log: RoomLog, body: str) -> Any:
    """A message of the forked room from a branch that started before its topic."""
    before = log.current_state(FORKED)
    topic = log.event(FORKED, BOT, "m.room.topic", {"topic": body}, "")
    message = log.message(FORKED, BOT, body)
    after = log.current_state(FORKED)
    state = message["new_room_event"]
    state["state_before_adds_event_ids"] = [e for k, e in before.items() if after.get(k) != e]
    state["state_before_removes_event_ids"] = [e for k, e in after.items() if before.get(k) != e]
    return topic, message


class _Client:
    def __init__(self, service: Service, http: httpx.AsyncClient, token: str) -> None:
        self.service, self.http, self.token = service, http, token

    async def get(self, path: str, **params: str) -> tuple[Any, int, float]:
        """The body, the statements the service issued and the seconds it took."""
        before = self.service.engine.statements
        t0 = time.perf_counter()
        r = await self.http.get(
            path, params=params, headers={"Authorization": f"Bearer {self.token}"}
        )
        elapsed = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:200]}")
        return orjson.loads(r.content), self.service.engine.statements - before, elapsed


async def _timed(op: Callable[[], Awaitable[object]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await op()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def measure(url: str, rounds: int, events: int) -> dict[str, tuple[int, float]]:
    """Figure name → (statements, p50 seconds); statements -1 for a query timed alone."""
    out: dict[str, tuple[int, float]] = {}
    log = RoomLog(SERVER)
    config = Config(database=url, listen="127.0.0.1:0", server_name=SERVER)
    async with open_service(config) as service:
        applied = await service.ingest(_build(log, events))
        if applied.rejected:
            raise RuntimeError(f"{applied.rejected} set-up messages rejected")
        token = await service.add_device(USER, "BENCH")
        async with httpx.AsyncClient(base_url=service.addresses[0], timeout=30) as http:
            client = _Client(service, http, token)
            await _relations(service, client, rounds, out)
            await _forks(service, log, client, rounds, out)
    return out


async def _relations(
    service: Service, client: _Client, rounds: int, out: dict[str, tuple[int, float]]
) -> None:
    v3 = "/_matrix/client/v3"
    cases = {
        "messages": lambda room: client.get(
            f"{v3}/rooms/{quote(room)}/messages", dir="b", limit=str(PAGE)
        ),
        "complete sync": lambda room: client.get(
            f"{v3}/sync",
            filter=orjson.dumps({"room": {"rooms": [room], "timeline": {"limit": PAGE}}}).decode(),
        ),
    }
    page: list[str] = []
    for name, request in cases.items():
        for room in (PLAIN, RELATED):
            await request(room)  # warm-up
        counts: dict[str, int] = {}
        times: dict[str, list[float]] = {PLAIN: [], RELATED: []}
        for _ in range(rounds):
            for room in (PLAIN, RELATED):
                body, n, elapsed = await request(room)
                counts[room] = n
                times[room].append(elapsed)
                if name == "messages" and room == RELATED:
                    page = [e["event_id"] for e in body["chunk"]]
        for room, label in ((PLAIN, "no relations"), (RELATED, "with relations")):
            out[f"{name}, {label}"] = (counts[room], statistics.median(times[room]))

    async def children(conn: Conn) -> object:
        return await rel.children(conn, RELATED, page, 1 << 62)

    out["bundle query alone (relations.children, 20 IDs)"] = (
        -1,
        await _timed(lambda: service.engine.read(children), rounds),
    )


async def _forks(
    service: Service, log: RoomLog, client: _Client, rounds: int, out: dict[str, tuple[int, float]]
) -> None:
    v3 = "/_matrix/client/v3"
    since = (await client.get(f"{v3}/sync"))[0]["next_batch"]
    quiet: list[tuple[int, float]] = []
    forked: list[tuple[int, float]] = []
    for i in range(rounds):
        await service.ingest([log.message(QUIET, BOT, f"new {i}")])
        body, n, elapsed = await client.get(f"{v3}/sync", since=since, timeout="0")
        quiet.append((n, elapsed))
        since = body["next_batch"]
        await service.ingest(list(_forked(log, f"branch {i}")))
        body, n, elapsed = await client.get(f"{v3}/sync", since=since, timeout="0")
        forked.append((n, elapsed))
        since = body["next_batch"]
    out["incremental sync, one new event, no fork in range"] = (
        quiet[-1][0],
        statistics.median(t for _, t in quiet),
    )
    out["incremental sync, a forked event in range"] = (
        forked[-1][0],
        statistics.median(t for _, t in forked),
    )
    rooms = [PLAIN, RELATED, QUIET, FORKED, *(f"!other{n}:{SERVER}" for n in range(OTHER_ROOMS))]

    async def lookup(conn: Conn) -> object:
        return await rooms_with_forks(conn, rooms, 0, 1 << 62)

    out[f"fork lookup alone (rooms_with_forks, {len(rooms)} rooms)"] = (
        -1,
        await _timed(lambda: service.engine.read(lookup), rounds),
    )
