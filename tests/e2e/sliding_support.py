"""Helpers for the sliding sync end-to-end tests: requests over HTTP, a user in rooms."""

from __future__ import annotations

from typing import Any

import httpx

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, SERVER, auth

SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def sliding(
    http: httpx.AsyncClient,
    token: str,
    body: dict[str, Any],
    *,
    status: int = 200,
    **params: Any,
) -> dict[str, Any]:
    """POST a sliding sync request; assert ``status``; return the body."""
    query = {k: str(v) for k, v in params.items() if v is not None}
    r = await http.post(SLIDING, json=body, params=query, headers=auth(token))
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    if status >= 400:
        assert set(out) >= {"errcode", "error"}, out
    return out


def room_list(
    start: int = 0,
    end: int = 9,
    *,
    timeline_limit: int = 5,
    required_state: list[list[str]] | None = None,
    filters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One list's request."""
    out: dict[str, Any] = {
        "ranges": [[start, end]],
        "timeline_limit": timeline_limit,
        "required_state": required_state if required_state is not None else [],
    }
    if filters is not None:
        out["filters"] = filters
    return out


def window(body: dict[str, Any], name: str = "all") -> list[str]:
    """The room IDs of a list's first window."""
    ids: list[str] = body["lists"][name]["ops"][0]["room_ids"]
    return ids


def texts(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body", "") for e in room.get("timeline", [])]


def room_id(n: int) -> str:
    return f"!r{n}:{SERVER}"


async def rooms_in_order(service: Service, count: int, *members: str) -> RoomLog:
    """``count`` rooms created by Alice (``members`` join), each with one message; room
    ``count - 1`` has the newest."""
    log = RoomLog(SERVER)
    for n in range(count):
        messages = log.create_room(room_id(n), ALICE, f"Room {n}")
        messages += [log.member(room_id(n), u, "join") for u in members]
        messages.append(log.message(room_id(n), ALICE, f"hello {n}"))
        await service.ingest(messages)
    return log


__all__ = ["ALICE", "BOB", "SLIDING", "room_id", "room_list", "rooms_in_order", "sliding"]


async def parked_then(
    service: Service,
    http: httpx.AsyncClient,
    token: str,
    body: dict[str, Any],
    pos: str,
    write: Any,
    *,
    expect_answer: bool = True,
) -> dict[str, Any] | None:
    """Park a sliding long-poll at ``pos``, run ``write``; return the body that answered
    it, or (``expect_answer=False``) check it is still parked afterwards and return None."""
    import trio

    from .conftest import wait_until

    answer: list[dict[str, Any]] = []
    parked = service.notifier.waiting()

    async def poll() -> None:
        answer.append(await sliding(http, token, body, pos=pos, timeout=20_000))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await wait_until(lambda: service.notifier.waiting() == parked + 1)
            assert not answer
            await write()
            if not expect_answer:
                # Whatever the write woke has been looked at and parked again by now.
                await trio.sleep(0.3)
                await wait_until(lambda: service.notifier.waiting() == parked + 1)
                assert not answer, answer
                nursery.cancel_scope.cancel()
        if not expect_answer:
            # The server notices the client has gone and ends the request.
            await wait_until(lambda: service.notifier.waiting() == parked)
            return None
    return answer[0]
