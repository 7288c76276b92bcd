"""Presence: set_presence on /sync, devices combined, PUT/GET status, visibility only to
users sharing a room, the presence filter, and no writes for idle polls."""

from __future__ import annotations

from typing import Any

import httpx
import nio
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, sync
from .support import call, nio_parse, room_with, stays_parked, woken_by


def presence_of(body: dict[str, Any], user: str) -> dict[str, Any] | None:
    """The content of ``user``'s last presence event in ``body``."""
    found = None
    for event in body.get("presence", {}).get("events", []):
        if event["sender"] == user:
            found = event["content"]
    return found


@pytest.fixture
async def shared(service: Service) -> None:
    """Alice and Bob share a room; Carol shares none."""
    await room_with(service, BOB)


async def test_user_is_offline_if_they_set_presence_offline_in_their_sync(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, alice, set_presence="offline")
    body = await sync(http, bob)
    assert presence_of(body, ALICE)["presence"] == "offline"  # type: ignore[index]
    parsed = nio_parse(body)
    events = [e for e in parsed.presence_events if isinstance(e, nio.PresenceEvent)]
    assert {(e.user_id, e.presence) for e in events} >= {(ALICE, "offline")}
    assert presence_of(body, BOB)["presence"] == "online"  # type: ignore[index]


async def test_presence_change_reaches_users_sharing_a_room_only(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    carol = await service.add_device(CAROL, "C")
    await sync(http, alice)
    await sync(http, carol)
    bob_since = (await sync(http, bob))["next_batch"]
    carol_since = (await sync(http, carol))["next_batch"]

    async def away() -> None:
        await call(http, "PUT", f"/presence/{ALICE}/status", alice, {"presence": "unavailable"})

    body = await woken_by(service, http, bob, bob_since, away)
    assert presence_of(body, ALICE)["presence"] == "unavailable"  # type: ignore[index]

    async def back() -> None:
        await call(
            http,
            "PUT",
            f"/presence/{ALICE}/status",
            alice,
            {"presence": "online", "status_msg": "hi"},
        )

    await stays_parked(service, http, carol, carol_since, back)
    assert presence_of(await sync(http, carol), ALICE) is None
    err = await call(http, "GET", f"/presence/{ALICE}/status", carol, status=403)
    assert err["errcode"] == "M_FORBIDDEN"
    status = await call(http, "GET", f"/presence/{ALICE}/status", bob)
    assert status["presence"] == "online" and status["status_msg"] == "hi"
    assert status["currently_active"] is True and isinstance(status["last_active_ago"], int)


async def test_a_users_devices_are_combined(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    phone = await service.add_device(ALICE, "PHONE")
    laptop = await service.add_device(ALICE, "LAPTOP")
    bob = await service.add_device(BOB, "B")

    async def seen_by_bob() -> str:
        status = await call(http, "GET", f"/presence/{ALICE}/status", bob)
        return str(status["presence"])

    await sync(http, phone, set_presence="offline")
    assert await seen_by_bob() == "offline"
    await sync(http, laptop, set_presence="unavailable")
    assert await seen_by_bob() == "unavailable"
    await sync(http, phone)  # online by default
    assert await seen_by_bob() == "online"
    await sync(http, phone, set_presence="offline")
    assert await seen_by_bob() == "unavailable"
    await sync(http, laptop, set_presence="offline")
    assert await seen_by_bob() == "offline"


async def test_idle_polls_write_nothing(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    alice = await service.add_device(ALICE, "A")
    first = await sync(http, alice)
    position = service.notifier.current.presence
    body = first
    for _ in range(3):
        body = await sync(http, alice, since=body["next_batch"])
    assert service.notifier.current.presence == position
    assert "presence" not in body


async def test_presence_filter(service: Service, http: httpx.AsyncClient, shared: None) -> None:
    alice = await service.add_device(ALICE, "A")
    bob = await service.add_device(BOB, "B")
    await sync(http, alice)
    await sync(http, bob)
    body = await sync(http, bob, filter={"presence": {"not_senders": [ALICE]}})
    assert presence_of(body, ALICE) is None and presence_of(body, BOB) is not None
    body = await sync(http, bob, filter={"presence": {"types": []}})
    assert "presence" not in body
    body = await sync(http, bob, filter={"presence": {"limit": 1}})
    assert len(body["presence"]["events"]) == 1


async def test_presence_log_messages_and_bad_requests(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    bob = await service.add_device(BOB, "B")
    since = (await sync(http, bob))["next_batch"]
    await service.ingest(
        [
            {
                "type": "presence",
                "presence": {
                    "user_id": ALICE,
                    "presence": "unavailable",
                    "status_msg": "lunch",
                    "last_active_ts": 1_700_000_000_000,
                },
            }
        ]
    )
    content = presence_of(await sync(http, bob, since=since), ALICE)
    assert content is not None
    assert content["presence"] == "unavailable" and content["status_msg"] == "lunch"
    assert content["currently_active"] is False and content["last_active_ago"] > 0
    err = await call(
        http, "PUT", f"/presence/{ALICE}/status", bob, {"presence": "online"}, status=403
    )
    assert err["errcode"] == "M_FORBIDDEN"
    err = await call(http, "PUT", f"/presence/{BOB}/status", bob, {"presence": "busy"}, status=400)
    assert err["errcode"] == "M_BAD_JSON"
    err = await call(http, "PUT", f"/presence/{BOB}/status", bob, content=b"[", status=400)
    assert err["errcode"] == "M_NOT_JSON"
    await call(http, "GET", f"/presence/{CAROL}/status", bob, status=403)
    r = await http.get(
        "/_matrix/client/v3/sync?set_presence=busy", headers={"Authorization": f"Bearer {bob}"}
    )
    assert r.status_code == 400


async def test_a_user_who_never_reported_presence_is_offline(
    service: Service, http: httpx.AsyncClient, shared: None
) -> None:
    """Bob shares a room with Alice, who has never synced nor set a presence: her status
    is ``offline`` (200, as other servers answer), in a shape matrix-nio accepts."""
    bob = await service.add_device(BOB, "B")
    content = await call(http, "GET", f"/presence/{ALICE}/status", bob)
    assert content == {"presence": "offline"}
    parsed = nio.PresenceGetResponse.from_dict(content, ALICE)
    assert isinstance(parsed, nio.PresenceGetResponse), parsed
    assert parsed.presence == "offline"
