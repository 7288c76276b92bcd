"""The SQL statements a /sync costs do not grow with the number of the user's rooms.

Counted by the engine (``engine.statements``) around the handler's answer, for a user in
one room and a user in 1,000 rooms with the same history each.
"""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from trio_sync import Service
from trio_sync.roomlog import RoomLog
from trio_sync.storage.accounts import Device
from trio_sync.sync.request import SyncRequest, parse_sync_request
from trio_sync.sync.response import SyncResponse
from trio_sync.tokens import StreamToken

from .conftest import ALICE, BOB, CAROL, SERVER

MANY = 1000
MESSAGES = 12  # more than the default timeline limit: every timeline is limited


def _room(n: int) -> str:
    return f"!r{n}:{SERVER}"


@pytest.fixture
async def rooms(service: Service) -> RoomLog:
    """Bob is in room 0 only; Carol in rooms 1..MANY; each room has the same history."""
    log = RoomLog(SERVER)
    batch: list[dict[str, object]] = []
    for n in range(MANY + 1):
        room_id = _room(n)
        batch += log.create_room(room_id, ALICE)
        batch.append(log.member(room_id, BOB if n == 0 else CAROL, "join"))
        batch += [log.message(room_id, ALICE, f"m{i}") for i in range(MESSAGES)]
        if len(batch) >= 2000:
            await service.ingest(batch)
            batch = []
    await service.ingest(batch)
    return log


async def _counted(service: Service, device: Device, req: SyncRequest) -> tuple[int, SyncResponse]:
    before = service.engine.statements
    resp = await service.sync.sync(device, req)
    return service.engine.statements - before, resp


async def _device(service: Service, user_id: str) -> Device:
    return await service.auth.authenticate(await service.add_device(user_id, "D"))


async def test_statements_are_the_same_for_one_room_and_a_thousand(
    service: Service, rooms: RoomLog
) -> None:
    bob, carol = await _device(service, BOB), await _device(service, CAROL)
    tokens: dict[str, StreamToken] = {}
    complete: dict[str, int] = {}
    for device in (bob, carol):
        await service.sync.sync(device, SyncRequest())  # first sync: presence, caches
    for device, count in ((bob, 1), (carol, MANY)):
        n, resp = await _counted(service, device, SyncRequest())
        body = orjson.loads(resp.dumps())
        joined = body["rooms"]["join"]
        assert len(joined) == count
        for section in joined.values():
            assert section["timeline"]["limited"] is True
            assert len(section["timeline"]["events"]) == 10
            assert {e["type"] for e in section["state"]["events"]} >= {"m.room.create"}
        complete[device.user_id] = n
        tokens[device.user_id] = resp.next_batch
    assert complete[BOB] == complete[CAROL]
    # Round one: the memberships, with the visibility, summaries and first timeline
    # pages (with which of their events have relations to bundle) of the rooms the
    # notifier knows joined, and the other eight streams' six queries; round two: state.
    # On PostgreSQL the queries of a round are one statement.
    postgres = service.engine.name == "postgres"
    assert complete[BOB] == (2 if postgres else 4 + 6 + 1)

    # One new event in one of the user's rooms.
    await service.ingest([rooms.message(_room(0), ALICE, "for bob")])
    await service.ingest([rooms.message(_room(MANY), ALICE, "for carol")])
    one_new = {}
    for device in (bob, carol):
        since = tokens[device.user_id]
        n, resp = await _counted(service, device, SyncRequest(since=since))
        body = orjson.loads(resp.dumps())
        assert len(body["rooms"]["join"]) == 1
        one_new[device.user_id] = n
    assert one_new[BOB] == one_new[CAROL]
    # The range's events, with which rooms have forked events there and which of its
    # events have relations to bundle: one round.
    assert one_new[BOB] == (1 if postgres else 3)

    # full_state=true: every room again, with all its state.
    full = {}
    for device, count in ((bob, 1), (carol, MANY)):
        since = tokens[device.user_id]
        n, resp = await _counted(service, device, SyncRequest(since=since, full_state=True))
        assert len(orjson.loads(resp.dumps())["rooms"]["join"]) == count
        full[device.user_id] = n
    assert full[BOB] == full[CAROL]


async def test_lazy_loading_complete_sync_is_as_flat(service: Service, rooms: RoomLog) -> None:
    """A lazy-loading client (as Element's filter asks) pays the statements any other
    client pays: the member events of each room's timeline senders, heroes and the user
    come with the state of every room in one read, not in one read per room."""
    lazy = parse_sync_request(
        {"filter": orjson.dumps({"room": {"state": {"lazy_load_members": True}}}).decode()}
    )
    bob, carol = await _device(service, BOB), await _device(service, CAROL)
    counts: dict[str, tuple[int, int]] = {}
    for device, count in ((bob, 1), (carol, MANY)):
        await service.sync.sync(device, SyncRequest())  # first sync: presence, caches
        plain, _ = await _counted(service, device, SyncRequest())
        n, resp = await _counted(service, device, lazy)
        joined = orjson.loads(resp.dumps())["rooms"]["join"]
        assert len(joined) == count
        for section in joined.values():
            state = section["state"]["events"]
            assert {e["state_key"] for e in state if e["type"] == "m.room.member"} == {
                ALICE,
                device.user_id,
            }
            assert {e["type"] for e in state} >= {"m.room.create", "m.room.power_levels"}
        counts[device.user_id] = (plain, n)
    assert counts[BOB] == counts[CAROL]
    assert counts[BOB][1] == counts[BOB][0]

    # A new event from a new sender in every room of each: the senders' member events
    # come in one read for all rooms.
    tokens = {}
    for device in (bob, carol):
        tokens[device.user_id] = (await service.sync.sync(device, lazy)).next_batch
    dave = f"@dave:{SERVER}"
    await service.ingest([rooms.member(_room(n), dave, "join") for n in range(MANY + 1)])
    for device in (bob, carol):
        tokens[device.user_id] = (
            await service.sync.sync(device, _since(lazy, tokens[device.user_id]))
        ).next_batch
    await service.ingest([rooms.message(_room(n), dave, "hi") for n in range(MANY + 1)])
    incremental = {}
    for device, count in ((bob, 1), (carol, MANY)):
        n, resp = await _counted(service, device, _since(lazy, tokens[device.user_id]))
        joined = orjson.loads(resp.dumps())["rooms"]["join"]
        assert len(joined) == count
        for section in joined.values():
            assert [e["state_key"] for e in section["state"]["events"]] == [dave]
        incremental[device.user_id] = n
    assert incremental[BOB] == incremental[CAROL]


async def test_limited_timelines_cost_no_statement_per_room(
    service: Service, rooms: RoomLog
) -> None:
    """An incremental sync in which several rooms' timelines are limited reads what
    changed in their state before each timeline in one statement for all of them, with
    and without lazy loading and ``use_state_after``."""
    lazy = parse_sync_request(
        {"filter": orjson.dumps({"room": {"state": {"lazy_load_members": True}}}).decode()}
    )
    after = parse_sync_request({"use_state_after": "true"})
    bob, carol = await _device(service, BOB), await _device(service, CAROL)
    burst = {BOB: [_room(0)], CAROL: [_room(n) for n in range(1, 11)]}
    for device in (bob, carol):
        await service.sync.sync(device, SyncRequest())  # first sync: presence, caches
    for req in (SyncRequest(), lazy, after):
        tokens = {}
        for device in (bob, carol):
            tokens[device.user_id] = (await service.sync.sync(device, req)).next_batch
        await service.ingest(
            [
                rooms.message(room_id, ALICE, f"burst {i}")
                for room_ids in burst.values()
                for room_id in room_ids
                for i in range(MESSAGES)
            ]
        )
        counts = {}
        for device in (bob, carol):
            n, resp = await _counted(service, device, _since(req, tokens[device.user_id]))
            joined = orjson.loads(resp.dumps())["rooms"]["join"]
            assert sorted(joined) == sorted(burst[device.user_id])
            assert all(s["timeline"]["limited"] for s in joined.values())
            counts[device.user_id] = n
        assert counts[BOB] == counts[CAROL], req


async def test_member_changes_cost_no_statement_per_room(service: Service, rooms: RoomLog) -> None:
    """An incremental sync in which members joined several rooms reads those rooms'
    summaries in one statement for all of them."""
    bob, carol = await _device(service, BOB), await _device(service, CAROL)
    joins = {BOB: [_room(0)], CAROL: [_room(n) for n in range(1, 11)]}
    for device in (bob, carol):
        await service.sync.sync(device, SyncRequest())  # first sync: presence, caches
    tokens = {}
    for device in (bob, carol):
        tokens[device.user_id] = (await service.sync.sync(device, SyncRequest())).next_batch
    erin = f"@erin:{SERVER}"
    await service.ingest(
        [rooms.member(room_id, erin, "join") for room_ids in joins.values() for room_id in room_ids]
    )
    counts = {}
    for device in (bob, carol):
        n, resp = await _counted(service, device, _since(SyncRequest(), tokens[device.user_id]))
        joined = orjson.loads(resp.dumps())["rooms"]["join"]
        assert sorted(joined) == sorted(joins[device.user_id])
        for section in joined.values():
            assert section["summary"]["m.joined_member_count"] == 3
            assert erin in section["summary"]["m.heroes"]
        counts[device.user_id] = n
    assert counts[BOB] == counts[CAROL]


def _since(req: SyncRequest, since: StreamToken) -> SyncRequest:
    return replace(req, since=since, timeout_ms=0)


async def test_complete_sync_is_right_when_memory_disagrees(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complete sync reads the visibility, summaries and timelines of the rooms the
    notifier has in memory alongside the memberships; when the memberships say otherwise
    (here the memory misses a joined room and has a room Bob is only invited to), the
    answer is still the one the memberships give, read again at the cost of more
    statements."""
    log = RoomLog(SERVER)
    joined_a, joined_b, invited = _room(1), _room(2), _room(3)
    batch: list[dict[str, object]] = []
    for room_id in (joined_a, joined_b, invited):
        batch += log.create_room(room_id, ALICE)
        batch += [log.message(room_id, ALICE, f"m{i}") for i in range(MESSAGES)]
    batch += [log.member(joined_a, BOB, "join"), log.member(joined_b, BOB, "join")]
    batch.append(log.member(invited, BOB, "invite", sender=ALICE))
    await service.ingest(batch)
    bob = await _device(service, BOB)
    await service.sync.sync(bob, SyncRequest())  # first sync: presence, caches

    def view(resp: SyncResponse) -> object:
        rooms = orjson.loads(resp.dumps())["rooms"]
        return {
            "join": {
                r: (
                    [e["event_id"] for e in s["timeline"]["events"]],
                    s["timeline"]["limited"],
                    sorted(e["event_id"] for e in s["state"]["events"]),
                    s.get("summary"),
                )
                for r, s in rooms.get("join", {}).items()
            },
            "invite": sorted(rooms.get("invite", {})),
        }

    right_n, right = await _counted(service, bob, SyncRequest())
    assert service.notifier.rooms_of(BOB) == {joined_a, joined_b}
    monkeypatch.setattr(service.notifier, "rooms_of", lambda user: frozenset({joined_a, invited}))
    wrong_n, wrong = await _counted(service, bob, SyncRequest())
    assert view(wrong) == view(right)
    assert set(view(right)["join"]) == {joined_a, joined_b}  # type: ignore[index]
    assert view(right)["invite"] == [invited]  # type: ignore[index]
    assert wrong_n > right_n


async def test_sync_reads_send_no_begin_or_commit(
    service: Service, rooms: RoomLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /sync reads only what settled at its token's positions, so its storage read is
    ``read_settled``: on PostgreSQL its statements are the only round trips it costs,
    with no BEGIN and COMMIT around them."""
    settled = 0
    read_settled = service.engine.read_settled

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal settled
        settled += 1
        return await read_settled(*args, **kwargs)  # type: ignore[arg-type]

    async def refused(*args: object, **kwargs: object) -> object:
        raise AssertionError("a /sync read opened a snapshot transaction")

    bob = await _device(service, BOB)
    monkeypatch.setattr(service.engine, "read_settled", counted)
    monkeypatch.setattr(service.engine, "read", refused)
    first = await service.sync.sync(bob, SyncRequest())
    await service.ingest([rooms.message(_room(0), ALICE, "news")])
    later = await service.sync.sync(bob, SyncRequest(since=first.next_batch))
    events = orjson.loads(later.dumps())["rooms"]["join"][_room(0)]["timeline"]["events"]
    assert [e["content"]["body"] for e in events] == ["news"]
    assert settled == 2
