"""``SharedReads``: requests whose reads fall due together share one storage read, and a
failing request never takes the others down with it."""

from __future__ import annotations

import trio

from trio_sync.filters import Filter
from trio_sync.storage import Conn, Engine
from trio_sync.sync.batch import SharedReads
from trio_sync.sync.response import SyncContext, SyncResponse
from trio_sync.tokens import StreamToken

NOW = StreamToken(pdu=1)


def _ctx(user: str) -> SyncContext:
    return SyncContext(user, "D", None, NOW, Filter())


class Failing(Exception):
    pass


#: Every user a gather ran for, in order.
GATHERED: list[str] = []


async def _gather(conn: Conn, ctx: SyncContext) -> SyncResponse:
    """A response whose ``next_batch`` carries a number read from the database; fails for
    the user ``@bad``."""
    GATHERED.append(ctx.user_id)
    n = await conn.fetchval("SELECT 41 + 1")
    if ctx.user_id == "@bad":
        raise Failing(ctx.user_id)
    return SyncResponse(next_batch=StreamToken(pdu=int(n)), presence=[ctx.user_id])


async def _all(reads: SharedReads, users: list[str]) -> dict[str, SyncResponse | Exception]:
    out: dict[str, SyncResponse | Exception] = {}

    async def one(user: str) -> None:
        try:
            out[user] = await reads.read(_ctx(user), user)
        except Failing as exc:
            out[user] = exc

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(one, user)
    return out


async def test_requests_due_together_share_one_read(engine: Engine) -> None:
    reads = SharedReads(engine, _gather)
    before = engine.statements
    got = await _all(reads, [f"@u{i}" for i in range(20)])
    assert reads.reads == 1 and reads.served == 20
    assert engine.statements - before == 20  # one storage read, each gather's statement
    for user, resp in got.items():
        assert isinstance(resp, SyncResponse)
        assert resp.presence == [user] and resp.next_batch.pdu == 42


async def test_one_failing_request_fails_alone(engine: Engine) -> None:
    reads = SharedReads(engine, _gather)
    GATHERED.clear()
    got = await _all(reads, ["@a", "@bad", "@b"])
    assert isinstance(got["@bad"], Failing)
    # The shared read stopped at the failing request; then each read alone.
    assert sorted(GATHERED[-3:]) == ["@a", "@b", "@bad"]
    for user in ("@a", "@b"):
        resp = got[user]
        assert isinstance(resp, SyncResponse) and resp.presence == [user]
    # The shared read failed; each request then read alone.
    assert reads.reads == 0


async def test_a_request_alone_reads_alone(engine: Engine) -> None:
    reads = SharedReads(engine, _gather)
    resp = await reads.read(_ctx("@solo"), "@solo")
    assert resp.presence == ["@solo"] and reads.reads == 1 and reads.served == 1
    # A lone request's failure is raised at once, without reading again.
    GATHERED.clear()
    try:
        await reads.read(_ctx("@bad"), "@bad")
    except Failing:
        pass
    else:
        raise AssertionError("the gather's error was not raised")
    assert GATHERED == ["@bad"]


async def test_the_same_key_gets_the_same_response(engine: Engine) -> None:
    reads = SharedReads(engine, _gather)
    out: list[SyncResponse] = []

    async def one() -> None:
        out.append(await reads.read(_ctx("@same"), ("@same", "D")))

    before = engine.statements
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    assert out[0] is out[1] is out[2]
    assert engine.statements - before == 1
