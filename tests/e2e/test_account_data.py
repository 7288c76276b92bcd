"""Account data and tags over HTTP: writes, reads, /sync (complete and incremental),
waking, ownership, membership and bad input."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, SERVER, sync
from .support import (
    ROOM,
    call,
    global_account_data,
    room_account_data,
    room_with,
    stays_parked,
    woken_by,
)

TAGS = f"/user/{ALICE}/rooms/{ROOM}/tags"


@pytest.fixture
async def alice(service: Service) -> str:
    await room_with(service, BOB)
    return await service.add_device(ALICE, "ALICE1")


async def test_new_account_data_appears_in_incremental_sync(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    since = (await sync(http, alice))["next_batch"]
    content = {"theme": "dark", "n": 1}
    await call(http, "PUT", f"/user/{ALICE}/account_data/org.example.settings", alice, content)
    body = await sync(http, alice, since=since)
    assert global_account_data(body) == {"org.example.settings": content}
    got = await call(http, "GET", f"/user/{ALICE}/account_data/org.example.settings", alice)
    assert got == content
    # Nothing new after it.
    again = await sync(http, alice, since=body["next_batch"])
    assert "account_data" not in again


async def test_account_data_replaces_and_complete_sync_has_latest(
    http: httpx.AsyncClient, alice: str
) -> None:
    for n in range(3):
        await call(http, "PUT", f"/user/{ALICE}/account_data/org.example.n", alice, {"n": n})
    body = await sync(http, alice)
    assert global_account_data(body)["org.example.n"] == {"n": 2}


async def test_tags_appear_in_an_initial_sync(http: httpx.AsyncClient, alice: str) -> None:
    await call(http, "PUT", f"{TAGS}/u.work", alice, {"order": 0.25})
    await call(http, "PUT", f"{TAGS}/m.favourite", alice, {})
    body = await sync(http, alice)
    assert room_account_data(body, ROOM)["m.tag"] == {
        "tags": {"u.work": {"order": 0.25}, "m.favourite": {}}
    }
    assert (await call(http, "GET", TAGS, alice))["tags"] == {
        "u.work": {"order": 0.25},
        "m.favourite": {},
    }


async def test_deleted_tags_appear_in_an_incremental_sync(
    http: httpx.AsyncClient, alice: str
) -> None:
    await call(http, "PUT", f"{TAGS}/u.work", alice, {"order": 0.5})
    await call(http, "PUT", f"{TAGS}/u.home", alice, {})
    since = (await sync(http, alice))["next_batch"]
    await call(http, "DELETE", f"{TAGS}/u.work", alice)
    body = await sync(http, alice, since=since)
    # A room with only account data news is still in rooms.join, timeline empty.
    assert room_account_data(body, ROOM) == {"m.tag": {"tags": {"u.home": {}}}}
    assert body["rooms"]["join"][ROOM]["timeline"]["events"] == []
    assert (await call(http, "GET", TAGS, alice))["tags"] == {"u.home": {}}


async def test_room_account_data_round_trip(http: httpx.AsyncClient, alice: str) -> None:
    path = f"/user/{ALICE}/rooms/{ROOM}/account_data/org.example.room"
    await call(http, "GET", path, alice, status=404)
    since = (await sync(http, alice))["next_batch"]
    await call(http, "PUT", path, alice, {"pinned": True})
    assert await call(http, "GET", path, alice) == {"pinned": True}
    body = await sync(http, alice, since=since)
    assert room_account_data(body, ROOM) == {"org.example.room": {"pinned": True}}
    assert "account_data" not in body  # not global


async def test_account_data_wakes_only_its_user(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    bob = await service.add_device(BOB, "BOB1")
    # Both come online first (which each other sees as presence), then wait.
    await sync(http, bob)
    since = (await sync(http, alice))["next_batch"]
    bob_since = (await sync(http, bob))["next_batch"]

    async def write() -> None:
        await call(http, "PUT", f"/user/{ALICE}/account_data/org.example.w", alice, {"w": 1})

    body = await woken_by(service, http, alice, since, write)
    assert global_account_data(body) == {"org.example.w": {"w": 1}}
    await stays_parked(service, http, bob, bob_since, write)


async def test_server_managed_types_cannot_be_put(http: httpx.AsyncClient, alice: str) -> None:
    for event_type in ("m.fully_read", "m.push_rules"):
        err = await call(
            http, "PUT", f"/user/{ALICE}/account_data/{event_type}", alice, {}, status=405
        )
        assert err["errcode"] == "M_BAD_JSON"
    room_path = f"/user/{ALICE}/rooms/{ROOM}/account_data/m.fully_read"
    await call(http, "PUT", room_path, alice, {"event_id": "$x"}, status=405)


async def test_only_the_user_may_read_or_write_its_account_data(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    bob = await service.add_device(BOB, "BOB1")
    path = f"/user/{ALICE}/account_data/org.example.secret"
    await call(http, "PUT", path, alice, {"s": 1})
    for method, body in (("GET", None), ("PUT", {"s": 2})):
        err = await call(http, method, path, bob, body, status=403)
        assert err["errcode"] == "M_FORBIDDEN"
    await call(http, "GET", TAGS, bob, status=403)
    await call(http, "PUT", f"{TAGS}/u.x", bob, {}, status=403)
    assert await call(http, "GET", path, alice) == {"s": 1}


async def test_writes_to_a_room_the_user_is_not_in_are_forbidden(
    service: Service, http: httpx.AsyncClient
) -> None:
    await room_with(service, BOB)
    carol = await service.add_device(CAROL, "C")
    for path in (
        f"/user/{CAROL}/rooms/{ROOM}/account_data/org.example.x",
        f"/user/{CAROL}/rooms/{ROOM}/tags/u.work",
    ):
        err = await call(http, "PUT", path, carol, {}, status=403)
        assert err["errcode"] == "M_FORBIDDEN"
    body = await sync(http, carol)
    assert "account_data" not in body.get("rooms", {}).get("join", {}).get(ROOM, {})


async def test_bad_bodies_are_400(http: httpx.AsyncClient, alice: str) -> None:
    path = f"/user/{ALICE}/account_data/org.example.bad"
    err = await call(http, "PUT", path, alice, content=b"{not json", status=400)
    assert err["errcode"] == "M_NOT_JSON"
    err = await call(http, "PUT", path, alice, [1, 2], status=400)
    assert err["errcode"] == "M_BAD_JSON"
    err = await call(http, "PUT", f"{TAGS}/u.bad", alice, {"order": "first"}, status=400)
    assert err["errcode"] == "M_BAD_JSON"
    bad_room = f"/user/{ALICE}/rooms/not-a-room/account_data/org.example.x"
    err = await call(http, "PUT", bad_room, alice, {}, status=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    await call(http, "GET", path, alice, status=404)


async def test_client_data_log_messages_feed_the_stream(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    since = (await sync(http, alice))["next_batch"]
    await service.ingest(
        [
            {
                "type": "client_data",
                "client_data": {
                    "user_id": ALICE,
                    "room_id": ROOM,
                    "type": "m.tag",
                    "content": {"tags": {"u.log": {}}},
                },
            },
            {
                "type": "client_data",
                "client_data": {"user_id": ALICE, "type": "m.direct", "content": {}},
            },
        ]
    )
    body = await sync(http, alice, since=since)
    assert room_account_data(body, ROOM) == {"m.tag": {"tags": {"u.log": {}}}}
    assert global_account_data(body) == {"m.direct": {}}


async def test_account_data_filters(http: httpx.AsyncClient, alice: str) -> None:
    await call(http, "PUT", f"/user/{ALICE}/account_data/org.example.a", alice, {"a": 1})
    await call(http, "PUT", f"/user/{ALICE}/account_data/org.other.b", alice, {"b": 1})
    await call(http, "PUT", f"{TAGS}/u.work", alice, {})
    filt = {
        "account_data": {"types": ["org.example.*"]},
        "room": {"account_data": {"not_types": ["m.tag"]}},
    }
    body = await sync(http, alice, filter=filt)
    assert set(global_account_data(body)) == {"org.example.a"}
    assert room_account_data(body, ROOM) == {}
    limited = await sync(http, alice, filter={"account_data": {"limit": 1}})
    assert len(global_account_data(limited)) == 1


async def test_r0_prefix_serves_account_data(http: httpx.AsyncClient, alice: str) -> None:
    r = await http.put(
        f"/_matrix/client/r0/user/{ALICE}/account_data/org.example.r0",
        json={"r0": True},
        headers={"Authorization": f"Bearer {alice}"},
    )
    assert r.status_code == 200
    assert await call(http, "GET", f"/user/{ALICE}/account_data/org.example.r0", alice) == {
        "r0": True
    }
    assert SERVER in ALICE
