"""The worked example: one room, 15 events, synced from several points.

PDU positions 1..15 hold ``[A, B, C, D, 1, 2, 3, D', 4, D'', 5, B', D''', D'''', 6]``:
letters are state events (``'`` replaces the same ``(type, state_key)``), numbers are
messages. A = m.room.create, B = Alice's join (B' a displayname change), C =
m.room.join_rules, D = m.room.topic.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service, StreamToken
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, SERVER, event_id, state_ids, sync, timeline_ids, token_fields

ROOM = f"!seed:{SERVER}"
ORDER = ["A", "B", "C", "D", "1", "2", "3", "D'", "4", "D''", "5", "B'", "D'''", "D''''", "6"]


def seed_messages() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The 15 messages in order, and label → event ID."""
    log = RoomLog(SERVER)
    topic = 0

    def build(label: str) -> dict[str, Any]:
        nonlocal topic
        if label == "A":
            return log.event(ROOM, ALICE, "m.room.create", {"room_version": "10"}, "")
        if label == "B":
            return log.member(ROOM, ALICE, "join")
        if label == "B'":
            return log.member(ROOM, ALICE, "join", displayname="Alice")
        if label == "C":
            return log.event(ROOM, ALICE, "m.room.join_rules", {"join_rule": "public"}, "")
        if label.startswith("D"):
            topic += 1
            return log.event(ROOM, ALICE, "m.room.topic", {"topic": f"topic {topic}"}, "")
        return log.message(ROOM, ALICE, label)

    messages = [build(label) for label in ORDER]
    return messages, {label: event_id(m) for label, m in zip(ORDER, messages, strict=True)}


@pytest.fixture
async def seeded(service: Service) -> tuple[str, dict[str, str]]:
    """Alice's access token and the labels' event IDs, with the room ingested."""
    messages, labels = seed_messages()
    applied = await service.ingest(messages)
    assert applied.accepted == 15 and applied.rejected == 0
    assert service.notifier.current.pdu == 15
    return await service.add_device(ALICE, "SEED"), labels


def since(pdu: int) -> str:
    return str(StreamToken(pdu=pdu))


def labels_of(event_ids: list[str], labels: dict[str, str]) -> list[str]:
    by_id = {v: k for k, v in labels.items()}
    return [by_id.get(e, e) for e in event_ids]


async def test_since_14_gets_only_the_last_message(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, labels = seeded
    body = await sync(http, token, since=since(14))
    assert labels_of(timeline_ids(body, "join", ROOM), labels) == ["6"]
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"]["limited"] is False
    assert room["state"]["events"] == []


async def test_since_9_limit_5_is_limited_with_state_at_timeline_start(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, labels = seeded
    body = await sync(http, token, since=since(9), filter={"room": {"timeline": {"limit": 5}}})
    assert labels_of(timeline_ids(body, "join", ROOM), labels) == [
        "5",
        "B'",
        "D'''",
        "D''''",
        "6",
    ]
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"]["limited"] is True
    assert labels_of(state_ids(body, "join", ROOM), labels) == ["D''"]
    assert room["timeline"]["prev_batch"]


async def test_complete_sync_limit_1_has_current_state_before_last_event(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, labels = seeded
    body = await sync(http, token, filter={"room": {"timeline": {"limit": 1}}})
    assert labels_of(timeline_ids(body, "join", ROOM), labels) == ["6"]
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"]["limited"] is True
    state = labels_of(state_ids(body, "join", ROOM), labels)
    assert sorted(state) == sorted(["A", "B'", "C", "D''''"])
    assert len(state) == 4
    assert token_fields(body["next_batch"])[0] == 15


async def test_complete_sync_default_limit_is_ten(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, labels = seeded
    body = await sync(http, token)
    assert labels_of(timeline_ids(body, "join", ROOM), labels) == ORDER[5:]
    room = body["rooms"]["join"][ROOM]
    assert room["timeline"]["limited"] is True
    # State at the start of the timeline (after position 5): A, B, C, D.
    assert sorted(labels_of(state_ids(body, "join", ROOM), labels)) == sorted(["A", "B", "C", "D"])


async def test_since_15_has_nothing_new(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, _ = seeded
    body = await sync(http, token, since=since(15))
    assert "rooms" not in body or not body["rooms"].get("join")
    assert token_fields(body["next_batch"])[0] == 15


async def test_prev_batch_of_a_limited_timeline_differs_from_next_batch(
    http: httpx.AsyncClient, seeded: tuple[str, dict[str, str]]
) -> None:
    token, _ = seeded
    body = await sync(http, token, since=since(9), filter={"room": {"timeline": {"limit": 5}}})
    prev_batch = body["rooms"]["join"][ROOM]["timeline"]["prev_batch"]
    assert isinstance(prev_batch, str) and prev_batch
    assert prev_batch != body["next_batch"]
