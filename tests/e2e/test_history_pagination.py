"""Room history on request beyond the plain stream: the member events lazy loading adds
to ``/messages`` pages are those in effect at the page's events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB
from .rooms_support import ROOM, Rooms, make_rooms

LAZY = {"lazy_load_members": True}


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def names(body: dict[str, Any]) -> dict[str, str | None]:
    """Display names of the member events in a ``/messages`` body's ``state``."""
    return {
        e["state_key"]: e["content"].get("displayname")
        for e in body.get("state", [])
        if e["type"] == "m.room.member"
    }


async def test_lazy_members_are_those_in_effect_at_the_page(rooms: Rooms) -> None:
    await rooms.room()
    await rooms.join(ROOM, ALICE, displayname="Old Alice")
    early = await rooms.say(ROOM, ALICE, "a1", "a2", "a3")
    await rooms.join(ROOM, ALICE, displayname="New Alice")
    late = await rooms.say(ROOM, ALICE, "a4", "a5")
    await rooms.join(ROOM, BOB, displayname="Bob later")
    messages_only = {**LAZY, "types": ["m.room.message"]}
    page = await rooms.messages(BOB, ROOM, limit=2, filter=messages_only)
    assert [e["event_id"] for e in page["chunk"]] == late[::-1]
    assert names(page) == {ALICE: "New Alice"}
    page = await rooms.messages(BOB, ROOM, limit=3, filter=messages_only, **{"from": page["end"]})
    assert [e["event_id"] for e in page["chunk"]] == early[::-1]
    assert names(page) == {ALICE: "Old Alice"}
    forwards = await rooms.messages(BOB, ROOM, dir="f", limit=3, filter=messages_only)
    assert [e["event_id"] for e in forwards["chunk"]] == early
    assert names(forwards) == {ALICE: "Old Alice"}
