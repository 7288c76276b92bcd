"""Sliding sync lists: windows, ordering by the last bump, counts, incremental responses
with only the rooms that changed, filters, invites, knocks and leaves."""

from __future__ import annotations

import httpx
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import ALICE, BOB, CAROL, SERVER
from .rooms_support import remote_invite
from .sliding_support import room_id, room_list, rooms_in_order, sliding, texts, window


@pytest.fixture
async def alice(service: Service) -> str:
    return await service.add_device(ALICE, "PHONE")


async def test_versions_advertises_sliding_sync(http: httpx.AsyncClient) -> None:
    r = await http.get("/_matrix/client/versions")
    assert r.json()["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_a_window_holds_the_most_recently_active_rooms_newest_first(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    await rooms_in_order(service, 6)
    body = await sliding(http, alice, {"lists": {"all": room_list(0, 2, timeline_limit=1)}})
    assert body["lists"]["all"]["count"] == 6
    assert window(body) == [room_id(5), room_id(4), room_id(3)]
    assert set(body["rooms"]) == {room_id(5), room_id(4), room_id(3)}
    room = body["rooms"][room_id(5)]
    assert room["initial"] is True
    assert room["name"] == "Room 5"
    assert texts(room) == ["hello 5"]
    assert room["limited"] is True
    assert room["joined_count"] == 1
    assert room["membership"] == "join"
    stamps = [body["rooms"][r]["bump_stamp"] for r in window(body)]
    assert stamps == sorted(stamps, reverse=True)
    # The next window; ranges spelled the merged proposal's way.
    more = await sliding(http, alice, {"lists": {"all": {"range": [3, 5], "timeline_limit": 1}}})
    assert window(more) == [room_id(2), room_id(1), room_id(0)]


async def test_incremental_responses_carry_only_changed_rooms(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 4)
    request = {"lists": {"all": room_list(0, 3, timeline_limit=3)}}
    first = await sliding(http, alice, request)
    assert len(first["rooms"]) == 4
    # Nothing new: no rooms, same pos.
    quiet = await sliding(http, alice, request, pos=first["pos"])
    assert quiet["rooms"] == {}
    assert quiet["pos"] == first["pos"]
    await service.ingest([log.message(room_id(1), ALICE, "news")])
    second = await sliding(http, alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [room_id(1)]
    room = second["rooms"][room_id(1)]
    assert "initial" not in room
    assert texts(room) == ["news"]
    assert room["limited"] is False
    assert room["num_live"] == 1
    # The bumped room leads the window now.
    assert window(second)[0] == room_id(1)
    # Retrying the same pos gives the same answer (the response may have been lost).
    again = await sliding(http, alice, request, pos=first["pos"])
    assert texts(again["rooms"][room_id(1)]) == ["news"]
    third = await sliding(http, alice, request, pos=again["pos"])
    assert third["rooms"] == {}


async def test_a_room_entering_the_window_is_sent_whole(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 5)
    request = {"lists": {"all": room_list(0, 1, timeline_limit=2)}}
    first = await sliding(http, alice, request)
    assert set(first["rooms"]) == {room_id(4), room_id(3)}
    await service.ingest([log.message(room_id(0), ALICE, "back on top")])
    second = await sliding(http, alice, request, pos=first["pos"])
    assert list(second["rooms"]) == [room_id(0)]
    assert second["rooms"][room_id(0)]["initial"] is True
    assert texts(second["rooms"][room_id(0)]) == ["hello 0", "back on top"]


async def test_growing_the_timeline_limit_resends_a_longer_timeline(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 1)
    await service.ingest([log.message(room_id(0), ALICE, f"m{n}") for n in range(4)])
    first = await sliding(http, alice, {"lists": {"all": room_list(0, 0, timeline_limit=1)}})
    assert texts(first["rooms"][room_id(0)]) == ["m3"]
    more = await sliding(
        http, alice, {"lists": {"all": room_list(0, 0, timeline_limit=3)}}, pos=first["pos"]
    )
    room = more["rooms"][room_id(0)]
    assert room["expanded_timeline"] is True
    assert texts(room) == ["m1", "m2", "m3"]
    assert room["limited"] is True


async def test_filters_select_rooms_and_counts_follow(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 3)
    await service.ingest(
        [
            log.event(room_id(0), ALICE, "m.room.encryption", {"algorithm": "m.megolm.v1"}, ""),
            {
                "type": "client_data",
                "client_data": {
                    "user_id": ALICE,
                    "type": "m.direct",
                    "content": {BOB: [room_id(1)]},
                },
            },
            {
                "type": "client_data",
                "client_data": {
                    "user_id": ALICE,
                    "room_id": room_id(2),
                    "type": "m.tag",
                    "content": {"tags": {"u.work": {}}},
                },
            },
        ]
    )
    lists = {
        "enc": room_list(filters={"is_encrypted": True}),
        "plain": room_list(filters={"is_encrypted": False}),
        "dm": room_list(filters={"is_dm": True}),
        "work": room_list(filters={"tags": ["u.work"]}),
        "notwork": room_list(filters={"not_tags": ["u.work"]}),
        "spaces": room_list(filters={"room_types": ["m.space"]}),
        "nospace": room_list(filters={"not_room_types": ["m.space"]}),
    }
    body = await sliding(http, alice, {"lists": lists})
    counts = {name: body["lists"][name]["count"] for name in lists}
    assert counts == {
        "enc": 1,
        "plain": 2,
        "dm": 1,
        "work": 1,
        "notwork": 2,
        "spaces": 0,
        "nospace": 3,
    }
    assert window(body, "enc") == [room_id(0)]
    assert window(body, "dm") == [room_id(1)]
    assert body["rooms"][room_id(1)]["is_dm"] is True
    assert window(body, "work") == [room_id(2)]


async def test_space_filter_lists_the_space_children(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 3)
    space = f"!space:{SERVER}"
    messages = log.create_room(space, ALICE, "Space")
    messages.append(log.event(space, ALICE, "m.space.child", {"via": [SERVER]}, room_id(1)))
    await service.ingest(messages)
    body = await sliding(http, alice, {"lists": {"all": room_list(filters={"spaces": [space]})}})
    assert window(body) == [room_id(1)]
    assert body["lists"]["all"]["count"] == 1


async def test_invites_knocks_and_leaves(service: Service, http: httpx.AsyncClient) -> None:
    bob = await service.add_device(BOB, "B")
    log = RoomLog(SERVER)
    invited, knocked, left = f"!inv:{SERVER}", f"!knock:{SERVER}", f"!left:{SERVER}"
    messages = log.create_room(invited, ALICE, "Invited")
    messages.append(log.member(invited, BOB, "invite", ALICE))
    messages += log.create_room(knocked, ALICE, "Knocked")
    messages.append(log.member(knocked, BOB, "knock"))
    messages += log.create_room(left, ALICE, "Left")
    messages.append(log.member(left, BOB, "join"))
    await service.ingest(messages)
    request = {"lists": {"all": room_list(0, 9, timeline_limit=5)}}
    first = await sliding(http, bob, request)
    assert set(window(first)) == {invited, knocked, left}
    inv = first["rooms"][invited]
    assert inv["membership"] == "invite"
    assert inv["name"] == "Invited"
    assert inv["invite_state"][-1]["content"]["membership"] == "invite"
    assert inv["stripped_state"] == inv["invite_state"]
    assert "timeline" not in inv
    assert first["rooms"][knocked]["membership"] == "knock"
    assert first["rooms"][knocked]["knock_state"][-1]["content"]["membership"] == "knock"
    invites_only = await sliding(
        http, bob, {"conn_id": "invites", "lists": {"inv": room_list(filters={"is_invite": True})}}
    )
    assert window(invites_only, "inv") == [invited]
    # Leaving: the newly left room comes with its leave, then drops out of the list.
    await service.ingest([log.member(left, BOB, "leave")])
    second = await sliding(http, bob, request, pos=first["pos"])
    assert second["rooms"][left]["membership"] == "leave"
    assert second["rooms"][left]["timeline"][-1]["content"]["membership"] == "leave"
    assert second["lists"]["all"]["count"] == 3
    await service.ingest([log.message(left, ALICE, "after bob left")])
    third = await sliding(http, bob, request, pos=second["pos"])
    assert left not in window(third)
    assert third["lists"]["all"]["count"] == 2
    assert left not in third["rooms"]
    # Joining the invited room: sent again as joined, with its timeline.
    await service.ingest([log.member(invited, BOB, "join")])
    fourth = await sliding(http, bob, request, pos=third["pos"])
    assert fourth["rooms"][invited]["membership"] == "join"
    assert fourth["rooms"][invited]["timeline"][-1]["sender"] == BOB


async def test_subscriptions_are_sent_and_kept_until_unsubscribed(
    service: Service, http: httpx.AsyncClient, alice: str
) -> None:
    log = await rooms_in_order(service, 3)
    sub = {"timeline_limit": 2, "required_state": [["m.room.name", ""]]}
    first = await sliding(http, alice, {"room_subscriptions": {room_id(0): sub}})
    assert list(first["rooms"]) == [room_id(0)]
    room = first["rooms"][room_id(0)]
    assert [e["type"] for e in room["required_state"]] == ["m.room.name"]
    # Sticky: a later request without it still follows the room.
    await service.ingest([log.message(room_id(0), ALICE, "sub news")])
    second = await sliding(http, alice, {}, pos=first["pos"])
    assert texts(second["rooms"][room_id(0)]) == ["sub news"]
    third = await sliding(http, alice, {"unsubscribe_rooms": [room_id(0)]}, pos=second["pos"])
    await service.ingest([log.message(room_id(0), ALICE, "unseen")])
    fourth = await sliding(http, alice, {}, pos=third["pos"])
    assert fourth["rooms"] == {}
    # Subscribing to a room the user is not in shows nothing.
    other = await sliding(http, alice, {"room_subscriptions": {f"!nope:{SERVER}": sub}})
    assert other["rooms"] == {}


async def test_history_visibility_and_ignored_users_apply(
    service: Service, http: httpx.AsyncClient
) -> None:
    carol = await service.add_device(CAROL, "C")
    log = RoomLog(SERVER)
    room = f"!hidden:{SERVER}"
    messages = log.create_room(room, ALICE, "Hidden")
    messages.append(
        log.event(room, ALICE, "m.room.history_visibility", {"history_visibility": "joined"}, "")
    )
    messages.append(log.message(room, ALICE, "before carol"))
    messages.append(log.member(room, BOB, "join"))
    messages.append(log.member(room, CAROL, "join"))
    messages.append(log.message(room, BOB, "from bob"))
    messages.append(log.message(room, ALICE, "from alice"))
    messages.append(
        {
            "type": "client_data",
            "client_data": {
                "user_id": CAROL,
                "type": "m.ignored_user_list",
                "content": {"ignored_users": {BOB: {}}},
            },
        }
    )
    await service.ingest(messages)
    body = await sliding(http, carol, {"lists": {"all": room_list(timeline_limit=10)}})
    timeline = body["rooms"][room]["timeline"]
    assert [e["content"].get("body") for e in timeline if e["type"] == "m.room.message"] == [
        "from alice"
    ]
    assert all(e["sender"] != BOB for e in timeline)
    assert timeline[-1]["unsigned"]["membership"] == "join"


async def test_invites_from_other_servers_sort_by_when_they_arrived(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = await rooms_in_order(service, 3, BOB)
    bob = await service.add_device(BOB, "B")
    request = {"lists": {"all": room_list(0, 9, timeline_limit=1)}}
    first = await sliding(http, bob, request)
    assert window(first) == [room_id(2), room_id(1), room_id(0)]
    # Room IDs that sort after the local ones: an ID is no help on a tie.
    near, far = "!x-near:remote.org", "!x-far:remote.org"
    await service.ingest([remote_invite(BOB, far, "$far-invite", "Far")[1]])
    second = await sliding(http, bob, request, pos=first["pos"])
    assert window(second) == [far, room_id(2), room_id(1), room_id(0)]
    invite = second["rooms"][far]
    assert invite["membership"] == "invite" and invite["name"] == "Far"
    assert invite["bump_stamp"] >= first["rooms"][room_id(2)]["bump_stamp"]
    # A message afterwards bumps its room above the invite.
    await service.ingest([log.message(room_id(0), ALICE, "news")])
    third = await sliding(http, bob, request, pos=second["pos"])
    assert window(third) == [room_id(0), far, room_id(2), room_id(1)]
    assert third["rooms"][room_id(0)]["bump_stamp"] > invite["bump_stamp"]
    # A later invite comes first; the client sees the order in the bump stamps too.
    await service.ingest([remote_invite(BOB, near, "$near-invite", "Near")[1]])
    fourth = await sliding(http, bob, request, pos=third["pos"])
    order = [near, room_id(0), far, room_id(2), room_id(1)]
    assert window(fourth) == order
    fresh = await sliding(http, bob, {**request, "conn_id": "fresh"})
    assert window(fresh) == order
    stamps = [fresh["rooms"][r]["bump_stamp"] for r in order]
    assert stamps == sorted(stamps, reverse=True)
