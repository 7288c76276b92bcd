"""Helpers for the end-to-end tests of the per-user streams: client API calls, a room with
members, and long-polls parked in the background."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import nio
import trio

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from ..conftest import nio_accepts
from .conftest import ALICE, BOB, SERVER, auth, sync, wait_until

CLIENT = "/_matrix/client/v3"
ROOM = f"!streams:{SERVER}"


async def call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    token: str,
    body: Any = None,
    *,
    status: int = 200,
    content: bytes | None = None,
) -> dict[str, Any]:
    """A client API request (``path`` under ``/_matrix/client/v3``); assert ``status``."""
    r = await http.request(
        method,
        CLIENT + path,
        headers=auth(token),
        json=body if content is None else None,
        content=content,
    )
    assert r.status_code == status, r.text
    out: dict[str, Any] = r.json()
    if status >= 400:
        assert set(out) >= {"errcode", "error"}, out
    return out


async def room_with(service: Service, *members: str, room_id: str = ROOM) -> RoomLog:
    """``room_id``, created by Alice, with ``members`` (default: Bob) joined."""
    log = RoomLog(SERVER)
    messages = log.create_room(room_id, ALICE)
    messages += [log.member(room_id, user, "join") for user in (members or (BOB,))]
    await service.ingest(messages)
    return log


def nio_parse(body: dict[str, Any]) -> nio.SyncResponse:
    """``body`` as matrix-nio reads it."""
    import copy

    parsed = nio.SyncResponse.from_dict(copy.deepcopy(body))
    assert isinstance(parsed, nio.SyncResponse), parsed
    return parsed


def ephemeral(body: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    """The ``event_type`` events of ``room_id``'s ``ephemeral`` section."""
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    events = room.get("ephemeral", {}).get("events", [])
    return [e for e in events if e["type"] == event_type]


def room_account_data(body: dict[str, Any], room_id: str) -> dict[str, dict[str, Any]]:
    """type → content of ``room_id``'s account data in ``body``."""
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return {e["type"]: e["content"] for e in room.get("account_data", {}).get("events", [])}


def global_account_data(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["type"]: e["content"] for e in body.get("account_data", {}).get("events", [])}


@dataclass
class Poll:
    """One long-poll running in the background."""

    body: dict[str, Any] | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def answered(self) -> bool:
        return self.done.is_set()


async def _poll(http: httpx.AsyncClient, token: str, poll: Poll, params: dict[str, Any]) -> None:
    try:
        poll.body = await sync(http, token, **params)
    finally:
        poll.done.set()


async def woken_by(
    service: Service,
    http: httpx.AsyncClient,
    token: str,
    since: str,
    write: Callable[[], Awaitable[object]],
    **params: Any,
) -> dict[str, Any]:
    """Park a long-poll of ``token`` at ``since``, run ``write``, and return the body that
    answered the poll (failing if it does not come within 5 seconds)."""
    poll = Poll()
    parked = service.notifier.waiting()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            args = {"since": since, "timeout": 20_000, **params}
            nursery.start_soon(_poll, http, token, poll, args)
            await wait_until(lambda: service.notifier.waiting() == parked + 1)
            assert not poll.answered
            await write()
            await poll.done.wait()
    assert poll.body is not None
    nio_accepts(poll.body)
    return poll.body


async def stays_parked(
    service: Service,
    http: httpx.AsyncClient,
    token: str,
    since: str,
    write: Callable[[], Awaitable[object]],
    **params: Any,
) -> None:
    """Park a long-poll of ``token`` at ``since``, run ``write``, and check the poll is
    still waiting after the write (and after anything it woke has been answered)."""
    poll = Poll()
    parked = service.notifier.waiting()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            args = {"since": since, "timeout": 20_000, **params}
            nursery.start_soon(_poll, http, token, poll, args)
            await wait_until(lambda: service.notifier.waiting() == parked + 1)
            await write()
            # Whatever the write woke has been answered or parked again by now.
            await trio.sleep(0.2)
            await wait_until(lambda: service.notifier.waiting() >= parked + 1)
            assert not poll.answered, poll.body
            nursery.cancel_scope.cancel()
