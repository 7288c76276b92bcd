"""``/rooms/{roomId}/messages``: back-pagination from a timeline's ``prev_batch``, forward
pagination, ``from``/``to`` tokens, ``limit``, filters, lazy-loaded members and errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from trio_sync import Service

from .conftest import ALICE, BOB, CAROL, timeline_ids
from .rooms_support import ROOM, Rooms, make_rooms, member_keys, messages_path


@pytest.fixture
async def rooms(service: Service, http: httpx.AsyncClient) -> Rooms:
    return await make_rooms(service, http)


def chunk_ids(body: dict[str, Any]) -> list[str]:
    return [e["event_id"] for e in body["chunk"]]


async def lobby(rooms: Rooms, n: int) -> tuple[list[str], str, list[str]]:
    """Bob's shared room, Alice's join, then ``n`` messages from Bob."""
    created = await rooms.room()
    join = await rooms.join(ROOM, ALICE)
    sent = await rooms.say(ROOM, BOB, *(f"m{i}" for i in range(n)))
    return created, join, sent


async def test_back_pagination_from_prev_batch_reaches_the_start_of_the_room(
    rooms: Rooms,
) -> None:
    created, join, sent = await lobby(rooms, 25)
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 5}}})
    assert timeline_ids(body, "join", ROOM) == sent[-5:]
    timeline = body["rooms"]["join"][ROOM]["timeline"]
    assert timeline["limited"] is True
    page = await rooms.messages(ALICE, ROOM, **{"from": timeline["prev_batch"], "limit": 10})
    assert chunk_ids(page) == list(reversed(sent[10:20]))
    assert "end" in page
    page = await rooms.messages(ALICE, ROOM, **{"from": page["end"], "limit": 10})
    assert chunk_ids(page) == list(reversed(sent[:10]))
    assert "end" in page
    page = await rooms.messages(ALICE, ROOM, **{"from": page["end"], "limit": 10})
    assert chunk_ids(page) == list(reversed([*created, join]))
    assert "end" not in page


async def test_messages_start_is_the_from_token(rooms: Rooms) -> None:
    await lobby(rooms, 6)
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 2}}})
    prev_batch = body["rooms"]["join"][ROOM]["timeline"]["prev_batch"]
    page = await rooms.messages(ALICE, ROOM, **{"from": prev_batch, "limit": 2})
    assert page["start"] == prev_batch
    end = page["end"]
    page = await rooms.messages(ALICE, ROOM, **{"from": end, "limit": 2})
    assert page["start"] == end


async def test_forward_pagination_from_prev_batch_replays_the_timeline(rooms: Rooms) -> None:
    _, _, sent = await lobby(rooms, 8)
    body = await rooms.sync(ALICE, filter={"room": {"timeline": {"limit": 5}}})
    prev_batch = body["rooms"]["join"][ROOM]["timeline"]["prev_batch"]
    page = await rooms.messages(ALICE, ROOM, **{"dir": "f", "from": prev_batch, "limit": 3})
    assert chunk_ids(page) == sent[3:6]
    page = await rooms.messages(ALICE, ROOM, **{"dir": "f", "from": page["end"], "limit": 3})
    assert chunk_ids(page) == sent[6:]
    assert "end" not in page


async def test_forward_pagination_without_from_starts_at_the_oldest_event(rooms: Rooms) -> None:
    created, join, sent = await lobby(rooms, 2)
    page = await rooms.messages(ALICE, ROOM, dir="f", limit=4)
    assert chunk_ids(page) == created[:4]
    assert await rooms.page_all(ALICE, ROOM, dir="f", limit=4) == [*created, join, *sent]


async def test_from_a_next_batch_token_ignores_later_events(rooms: Rooms) -> None:
    _, _, sent = await lobby(rooms, 4)
    next_batch = (await rooms.sync(ALICE))["next_batch"]
    await rooms.say(ROOM, BOB, "later", "even later")
    page = await rooms.messages(ALICE, ROOM, **{"from": next_batch, "limit": 3})
    assert chunk_ids(page) == list(reversed(sent[-3:]))


async def test_to_stops_at_an_earlier_sync_token(rooms: Rooms) -> None:
    await lobby(rooms, 4)
    first = (await rooms.sync(ALICE))["next_batch"]
    between = await rooms.say(ROOM, BOB, "n1", "n2", "n3")
    second = (await rooms.sync(ALICE, since=first))["next_batch"]
    await rooms.say(ROOM, BOB, "after the second sync")
    page = await rooms.messages(ALICE, ROOM, **{"from": second, "to": first, "limit": 10})
    assert chunk_ids(page) == list(reversed(between))
    assert "end" not in page
    page = await rooms.messages(ALICE, ROOM, **{"dir": "f", "from": first, "to": second})
    assert chunk_ids(page) == between
    assert "end" not in page


async def test_limit_caps_the_page(rooms: Rooms) -> None:
    _, _, sent = await lobby(rooms, 5)
    page = await rooms.messages(ALICE, ROOM, limit=2)
    assert chunk_ids(page) == [sent[4], sent[3]]
    assert "end" in page
    page = await rooms.messages(ALICE, ROOM)  # the default is 10
    assert len(page["chunk"]) == 10


async def _mixed_room(rooms: Rooms) -> dict[str, list[str]]:
    await rooms.room()
    out: dict[str, list[str]] = {"join": [await rooms.join(ROOM, ALICE)]}
    out["carol_join"] = [await rooms.join(ROOM, CAROL)]
    out["bob"] = await rooms.say(ROOM, BOB, "b1")
    out["carol"] = await rooms.say(ROOM, CAROL, "c1")
    out["topic"] = await rooms.ingest(
        rooms.log.event(ROOM, BOB, "m.room.topic", {"topic": "filters"}, "")
    )
    out["bob"] += await rooms.say(ROOM, BOB, "b2")
    out["carol"] += await rooms.say(ROOM, CAROL, "c2")
    return out


async def test_filter_types(rooms: Rooms) -> None:
    ev = await _mixed_room(rooms)
    page = await rooms.messages(ALICE, ROOM, limit=4, filter={"types": ["m.room.message"]})
    assert chunk_ids(page) == [ev["carol"][1], ev["bob"][1], ev["carol"][0], ev["bob"][0]]
    page = await rooms.messages(
        ALICE, ROOM, limit=3, filter={"not_types": ["m.room.message", "m.room.member"]}
    )
    assert chunk_ids(page)[0] == ev["topic"][0]
    assert {e["type"] for e in page["chunk"]}.isdisjoint({"m.room.message", "m.room.member"})
    page = await rooms.messages(ALICE, ROOM, limit=3, filter={"types": ["m.room.t*"]})
    assert chunk_ids(page) == ev["topic"]


async def test_filter_senders(rooms: Rooms) -> None:
    ev = await _mixed_room(rooms)
    page = await rooms.messages(ALICE, ROOM, limit=10, filter={"senders": [CAROL]})
    assert chunk_ids(page) == [ev["carol"][1], ev["carol"][0], ev["carol_join"][0]]
    page = await rooms.messages(ALICE, ROOM, limit=3, filter={"not_senders": [BOB]})
    assert chunk_ids(page) == [ev["carol"][1], ev["carol"][0], ev["carol_join"][0]]


async def test_filter_lazy_load_members_returns_the_senders_member_events(rooms: Rooms) -> None:
    ev = await _mixed_room(rooms)
    page = await rooms.messages(
        ALICE, ROOM, limit=2, filter={"types": ["m.room.message"], "lazy_load_members": True}
    )
    assert chunk_ids(page) == [ev["carol"][1], ev["bob"][1]]
    state = page["state"]
    assert member_keys(state) == {BOB, CAROL}
    assert {e["type"] for e in state} == {"m.room.member"}
    by_user = {e["state_key"]: e for e in state}
    assert by_user[CAROL]["event_id"] == ev["carol_join"][0]
    # Without lazy loading there is no member state.
    page = await rooms.messages(ALICE, ROOM, limit=2)
    assert not page.get("state")


@pytest.mark.parametrize(
    ("params", "errcodes"),
    [
        ({}, {"M_INVALID_PARAM", "M_MISSING_PARAM"}),
        ({"dir": "x"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "from": "not-a-token"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "from": "t1_x"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "to": "s1_2"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "limit": "ten"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "limit": "-1"}, {"M_INVALID_PARAM"}),
        ({"dir": "b", "filter": "{not json"}, {"M_NOT_JSON", "M_BAD_JSON"}),
        ({"dir": "b", "filter": '{"types": "m.room.message"}'}, {"M_BAD_JSON"}),
        ({"dir": "b", "filter": '{"senders": ["bob"]}'}, {"M_BAD_JSON"}),
    ],
)
async def test_bad_parameters_are_a_400(
    rooms: Rooms, params: dict[str, str], errcodes: set[str]
) -> None:
    await lobby(rooms, 1)
    r = await rooms.get(ALICE, messages_path(ROOM), **params)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] in errcodes


async def test_non_member_of_a_private_room_is_forbidden(rooms: Rooms) -> None:
    await lobby(rooms, 2)
    await rooms.error(CAROL, messages_path(ROOM), 403, "M_FORBIDDEN", dir="b")
    await rooms.error(CAROL, messages_path(ROOM), 403, "M_FORBIDDEN", dir="f")


async def test_every_timeline_has_a_usable_prev_batch(rooms: Rooms) -> None:
    _, _, sent = await lobby(rooms, 3)
    body = await rooms.sync(ALICE)
    first = body["rooms"]["join"][ROOM]["timeline"]
    assert isinstance(first["prev_batch"], str)
    since = body["next_batch"]
    new = await rooms.say(ROOM, BOB, "n1", "n2")
    body = await rooms.sync(ALICE, since=since)
    timeline = body["rooms"]["join"][ROOM]["timeline"]
    assert timeline_ids(body, "join", ROOM) == new
    assert timeline["limited"] is False
    # Back from an incremental timeline: the events the client already had.
    page = await rooms.messages(ALICE, ROOM, **{"from": timeline["prev_batch"], "limit": 3})
    assert chunk_ids(page) == list(reversed(sent))
    # A left room's timeline has one too.
    since = body["next_batch"]
    (leave,) = await rooms.ingest(rooms.log.member(ROOM, ALICE, "leave"))
    body = await rooms.sync(ALICE, since=since)
    left = body["rooms"]["leave"][ROOM]["timeline"]
    assert [e["event_id"] for e in left["events"]] == [leave]
    page = await rooms.messages(ALICE, ROOM, **{"from": left["prev_batch"], "limit": 2})
    assert chunk_ids(page) == list(reversed(new))
