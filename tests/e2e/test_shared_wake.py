"""One event, many parked polls: the wake is computed once, and each answer is still the
user's own.

Every poll woken by one committed batch is answered from one storage read shared by all
of them (``SyncHandler.shared_reads``): the room's new events, the text each event is
served as and the other reads that do not depend on the user are done once. These tests
park polls of users who see the same room differently (history visibility, ignored
users, filters, lazy loading, memberships changing in the batch, to-device messages and
account data of their own) and check that each parked answer is exactly what a fresh
``/sync`` from the same ``since`` gives that device, and that the wake's SQL does not
grow with the number of waiters.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import SERVER, event_id, sync, timeline_ids, wait_until, without_age
from .support import Poll, _poll

ROOM = f"!busy:{SERVER}"
OTHER = f"!quiet:{SERVER}"
BOT = f"@bot:{SERVER}"
NOISY = f"@noisy:{SERVER}"
QUIET = {"set_presence": "offline"}

#: Filters the parked polls use (inline JSON), by name.
FILTERS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "messages, limit 1": {"room": {"timeline": {"types": ["m.room.message"], "limit": 1}}},
    "not the bot": {"room": {"timeline": {"not_senders": [BOT]}}},
    "lazy members": {"room": {"state": {"lazy_load_members": True}}},
    "federation format": {"event_format": "federation"},
}


def _user(name: str) -> str:
    return f"@{name}:{SERVER}"


async def _settled(http: httpx.AsyncClient, token: str, **params: Any) -> str:
    """A token after the device's first syncs (its presence and caches settled)."""
    since = (await sync(http, token, **QUIET, **params))["next_batch"]
    return str((await sync(http, token, since=since, **QUIET, **params))["next_batch"])


async def _up_to_date(http: httpx.AsyncClient, polls: list[tuple[str, dict[str, Any]]]) -> None:
    """Move every poll's ``since`` to now: tokens taken before later joins (and first
    syncs) of others are behind them, and a poll with news would not park."""
    for n, (token, params) in enumerate(polls):
        body = await sync(http, token, **QUIET, **params)
        polls[n] = (token, {**params, "since": body["next_batch"]})


async def _park_all(
    service: Service,
    http: httpx.AsyncClient,
    polls: list[tuple[str, dict[str, Any]]],
    write: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Park every ``(token, params)`` poll, ingest ``write`` as one batch, and return the
    answers in order."""
    answers = [Poll() for _ in polls]
    parked = service.notifier.waiting()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for (token, params), poll in zip(polls, answers, strict=True):
                args = {"timeout": 20_000, **QUIET, **params}
                nursery.start_soon(_poll, http, token, poll, args)
            await wait_until(lambda: service.notifier.waiting() == parked + len(polls))
            assert not any(p.answered for p in answers)
            await service.ingest(write)
    out = []
    for poll in answers:
        assert poll.body is not None
        out.append(poll.body)
    return out


async def test_each_parked_answer_is_what_a_fresh_sync_gives(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = RoomLog(SERVER)
    members = [_user(f"m{i}") for i in range(len(FILTERS) * 2)]
    ignorer, leaver, target = _user("ignorer"), _user("leaver"), members[0]
    newcomer, invitee = _user("newcomer"), _user("invitee")
    setup = log.create_room(ROOM, BOT) + log.create_room(OTHER, BOT)
    setup.append(
        log.event(ROOM, BOT, "m.room.history_visibility", {"history_visibility": "joined"}, "")
    )
    setup += [log.member(ROOM, u, "join") for u in [*members, ignorer, leaver, NOISY]]
    setup += [log.member(OTHER, u, "join") for u in (newcomer, invitee)]
    setup.append(log.message(ROOM, BOT, "before everyone's token"))
    ignore = {"ignored_users": {NOISY: {}}}
    setup.append(
        {
            "type": "client_data",
            "client_data": {"user_id": ignorer, "type": "m.ignored_user_list", "content": ignore},
        }
    )
    await service.ingest(setup)

    polls: list[tuple[str, dict[str, Any]]] = []
    for i, user in enumerate(members):
        name = list(FILTERS)[i % len(FILTERS)]
        params = {} if FILTERS[name] is None else {"filter": FILTERS[name]}
        token = await service.add_device(user, "D")
        polls.append((token, {"since": await _settled(http, token, **params), **params}))
    for user in (ignorer, leaver, newcomer, invitee):
        token = await service.add_device(user, "D")
        polls.append((token, {"since": await _settled(http, token)}))
    # A device polling twice with the same request (a client retrying), and a device of
    # the same user with another filter.
    twice = await service.add_device(_user("twice"), "D")
    await service.ingest([log.member(ROOM, _user("twice"), "join")])
    twice_since = await _settled(http, twice)
    polls += [(twice, {"since": twice_since}), (twice, {"since": twice_since})]
    other_device = await service.add_device(_user("twice"), "E")
    limited = {"filter": FILTERS["messages, limit 1"]}
    polls.append(
        (other_device, {"since": await _settled(http, other_device, **limited), **limited})
    )
    await _up_to_date(http, polls)
    first = log.message(ROOM, BOT, "first")
    from_noisy = log.message(ROOM, NOISY, "from the ignored user")
    last = log.message(ROOM, BOT, "last")
    write = [
        first,
        from_noisy,
        log.member(ROOM, leaver, "leave"),
        log.member(ROOM, newcomer, "join"),
        log.member(ROOM, invitee, "invite", sender=BOT),
        last,
        {
            "type": "send_to_device",
            "send_to_device": {
                "user_id": target,
                "device_id": "D",
                "sender": BOT,
                "type": "m.test",
                "content": {"for": "target"},
            },
        },
        {
            "type": "client_data",
            "client_data": {"user_id": members[1], "type": "m.test", "content": {"x": 1}},
        },
    ]
    reads, served = service.sync.shared_reads.reads, service.sync.shared_reads.served
    answers = await _park_all(service, http, polls, write)
    # Every poll was answered from one storage read.
    assert service.sync.shared_reads.reads == reads + 1
    assert service.sync.shared_reads.served == served + len(polls)

    for (token, params), parked in zip(polls, answers, strict=True):
        fresh = await sync(http, token, **QUIET, **params)
        assert without_age(parked) == without_age(fresh), params

    # The answers do differ by user, as they should.
    by_user = dict(zip([t for t, _ in polls], answers, strict=True))
    plain = by_user[polls[0][0]]
    wanted = [event_id(m) for m in (first, from_noisy, last)]
    assert [e for e in timeline_ids(plain, "join", ROOM) if e in wanted] == wanted
    ignoring = by_user[polls[len(members)][0]]
    assert event_id(from_noisy) not in timeline_ids(ignoring, "join", ROOM)
    assert event_id(last) in timeline_ids(ignoring, "join", ROOM)
    left = by_user[polls[len(members) + 1][0]]
    assert ROOM in left["rooms"]["leave"] and event_id(last) not in str(left)
    joined = by_user[polls[len(members) + 2][0]]
    # History visibility "joined": the newcomer sees nothing from before its join.
    assert timeline_ids(joined, "join", ROOM)[-1] == event_id(last)
    assert event_id(first) not in timeline_ids(joined, "join", ROOM)
    invited = by_user[polls[len(members) + 3][0]]
    assert ROOM in invited["rooms"]["invite"]
    assert [e["content"] for e in plain["to_device"]["events"]] == [{"for": "target"}]
    assert "to_device" not in by_user[polls[1][0]]
    assert answers[-3] == answers[-2]  # the same request twice, the same answer
    assert timeline_ids(answers[-1], "join", ROOM) == [event_id(last)]


async def _wake_statements(
    service: Service, http: httpx.AsyncClient, log: RoomLog, room_id: str, waiters: int
) -> int:
    """SQL statements from one message in ``room_id`` until its ``waiters`` parked polls
    are answered (the message's own ingest included); checks that one storage read
    answered them all."""
    users = [_user(f"{room_id[1:6]}{i}") for i in range(waiters)]
    await service.ingest(
        log.create_room(room_id, BOT) + [log.member(room_id, u, "join") for u in users]
    )
    polls = []
    for user in users:
        token = await service.add_device(user, "D")
        polls.append((token, {"since": await _settled(http, token)}))
    await _up_to_date(http, polls)
    message = log.message(room_id, BOT, "to everyone")
    before, reads = service.engine.statements, service.sync.shared_reads.reads
    answers = await _park_all(service, http, polls, [message])
    count = service.engine.statements - before
    for body in answers:
        assert timeline_ids(body, "join", room_id) == [event_id(message)]
    # Every poll was answered from one storage read.
    assert service.sync.shared_reads.reads == reads + 1
    return count


async def test_a_wake_costs_the_same_sql_for_three_waiters_and_forty(
    service: Service, http: httpx.AsyncClient
) -> None:
    log = RoomLog(SERVER)
    few = await _wake_statements(service, http, log, f"!fewer:{SERVER}", 3)
    many = await _wake_statements(service, http, log, f"!many:{SERVER}", 40)
    assert many == few
