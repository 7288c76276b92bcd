"""Typing over HTTP: in complete, incremental and gapped syncs; stopping and expiry wake
waiting members; never shown to non-members; tokens from an earlier process."""

from __future__ import annotations

from typing import Any

import httpx
import nio
import pytest
import trio

from trio_sync import Service, StreamToken
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, sync, token_fields
from .support import ROOM, call, ephemeral, nio_parse, room_with, stays_parked, woken_by

TYPING = f"/rooms/{ROOM}/typing"


@pytest.fixture
async def room(service: Service) -> RoomLog:
    """Alice and Bob share ROOM; Carol is in no room."""
    return await room_with(service, BOB)


@pytest.fixture
async def tokens(service: Service, room: RoomLog) -> dict[str, str]:
    return {user: await service.add_device(user, "D" + user[1]) for user in (ALICE, BOB, CAROL)}


async def start_typing(http: httpx.AsyncClient, token: str, user: str, **body: Any) -> None:
    await call(http, "PUT", f"{TYPING}/{user}", token, {"typing": True, "timeout": 30000, **body})


def typing_users(body: dict[str, Any]) -> list[list[str]]:
    return [e["content"]["user_ids"] for e in ephemeral(body, ROOM, "m.typing")]


async def test_typing_events_appear_in_initial_sync(
    http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await start_typing(http, tokens[ALICE], ALICE)
    body = await sync(http, tokens[BOB])
    assert typing_users(body) == [[ALICE]]
    parsed = nio_parse(body)
    notices = [e for e in parsed.rooms.join[ROOM].ephemeral if isinstance(e, nio.TypingNoticeEvent)]
    assert [n.users for n in notices] == [[ALICE]]


async def test_typing_events_appear_in_incremental_sync(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await sync(http, tokens[ALICE])
    since = (await sync(http, tokens[BOB]))["next_batch"]

    async def typing() -> None:
        await start_typing(http, tokens[ALICE], ALICE)

    body = await woken_by(service, http, tokens[BOB], since, typing)
    assert typing_users(body) == [[ALICE]]
    # Renewing the timeout changes nothing anyone sees.
    since = body["next_batch"]
    await start_typing(http, tokens[ALICE], ALICE)
    assert typing_users(await sync(http, tokens[BOB], since=since)) == []


async def test_typing_events_appear_in_gapped_sync(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str], room: RoomLog
) -> None:
    await sync(http, tokens[ALICE])
    since = (await sync(http, tokens[BOB]))["next_batch"]
    await start_typing(http, tokens[ALICE], ALICE)
    # More events than the timeline limit: a gapped (limited) incremental sync.
    await service.ingest([room.message(ROOM, ALICE, f"m{n}") for n in range(5)])
    body = await sync(http, tokens[BOB], since=since, filter={"room": {"timeline": {"limit": 2}}})
    assert body["rooms"]["join"][ROOM]["timeline"]["limited"] is True
    assert typing_users(body) == [[ALICE]]


async def test_stopping_is_an_empty_list_and_wakes_members(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await start_typing(http, tokens[ALICE], ALICE)
    await sync(http, tokens[ALICE])
    since = (await sync(http, tokens[BOB]))["next_batch"]

    async def stop() -> None:
        await call(http, "PUT", f"{TYPING}/{ALICE}", tokens[ALICE], {"typing": False})

    body = await woken_by(service, http, tokens[BOB], since, stop)
    assert typing_users(body) == [[]]


async def test_expiry_wakes_waiting_members(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await sync(http, tokens[ALICE])
    since = (await sync(http, tokens[BOB]))["next_batch"]
    await start_typing(http, tokens[ALICE], ALICE, timeout=1000)
    body = await sync(http, tokens[BOB], since=since)
    assert typing_users(body) == [[ALICE]]

    async def nothing() -> None:
        pass

    # Nobody writes anything: the expiry alone answers the poll.
    expired = await woken_by(service, http, tokens[BOB], body["next_batch"], nothing)
    assert typing_users(expired) == [[]]


async def test_typing_notifications_dont_leak(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await sync(http, tokens[ALICE])
    await sync(http, tokens[BOB])
    carol_since = (await sync(http, tokens[CAROL]))["next_batch"]

    async def typing() -> None:
        await start_typing(http, tokens[ALICE], ALICE)

    await stays_parked(service, http, tokens[CAROL], carol_since, typing)
    assert "rooms" not in await sync(http, tokens[CAROL])
    body = await sync(http, tokens[CAROL], since=carol_since)
    assert ROOM not in body.get("rooms", {}).get("join", {})
    # Carol cannot type in a room she is not in, nor as someone else.
    err = await call(http, "PUT", f"{TYPING}/{CAROL}", tokens[CAROL], {"typing": True}, status=403)
    assert err["errcode"] == "M_FORBIDDEN"
    await call(http, "PUT", f"{TYPING}/{ALICE}", tokens[CAROL], {"typing": True}, status=403)


async def test_a_member_who_left_no_longer_sees_typing(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str], room: RoomLog
) -> None:
    since = (await sync(http, tokens[BOB]))["next_batch"]
    await service.ingest([room.member(ROOM, BOB, "leave")])
    await start_typing(http, tokens[ALICE], ALICE)
    assert ROOM not in (await sync(http, tokens[BOB])).get("rooms", {}).get("join", {})
    body = await sync(http, tokens[BOB], since=since)
    assert typing_users(body) == []
    assert ROOM in body["rooms"]["leave"]


async def test_bad_typing_requests(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    alice = tokens[ALICE]
    err = await call(http, "PUT", f"{TYPING}/{ALICE}", alice, {"timeout": 5}, status=400)
    assert err["errcode"] == "M_BAD_JSON"
    err = await call(
        http, "PUT", f"{TYPING}/{ALICE}", alice, {"typing": True, "timeout": "x"}, status=400
    )
    assert err["errcode"] == "M_BAD_JSON"
    err = await call(http, "PUT", f"{TYPING}/{ALICE}", alice, content=b"nope", status=400)
    assert err["errcode"] == "M_NOT_JSON"


async def test_token_from_an_earlier_process_is_answered_at_once(
    service: Service, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await start_typing(http, tokens[ALICE], ALICE)
    current = service.notifier.current
    # Typing positions of another process: ahead of this one's, and before its start.
    for typing in (current.typing + 1000, 5):
        since = str(current.with_stream("typing", typing))
        with trio.fail_after(5):
            body = await sync(http, tokens[BOB], since=since, timeout=20000)
        assert typing_users(body) == [[ALICE]]
        assert token_fields(body["next_batch"])[1] == service.notifier.current.typing
    # And the token it got back waits normally.
    assert StreamToken.parse(body["next_batch"]).typing == service.notifier.typing.position
