"""History visibility on random room histories, against a small model of the spec.

Hypothesis draws a room's history (joins, leaves, invites, kicks, bans, visibility changes,
messages, redactions); the model below says which events each user may see (spec: *Room
History Visibility*, server behaviour) and every read path must agree with it: complete
and incremental ``/sync``, ``/messages`` both ways, ``/context`` and ``/event``.

Hypothesis runs in a worker thread and hands each example to the Trio loop, so all the
examples share one service; each gets a room and users of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import SERVER, auth, encode_params, sync

MEMBER = "m.room.member"
HISTORY = "m.room.history_visibility"
SETTINGS = ("world_readable", "shared", "invited", "joined")
Pdu = dict[str, Any]

# --- the model: pure functions of the room's events, oldest first ------------------------


def replay(history: Sequence[Pdu], user: str) -> list[tuple[str, str]]:
    """(visibility, ``user``'s membership) before each event; the last item is now."""
    setting, membership = "shared", "leave"  # no setting counts as shared
    out = [(setting, membership)]
    for pdu in history:
        if pdu["type"] == HISTORY and pdu.get("state_key") == "":
            value = pdu["content"].get("history_visibility")
            setting = value if value in SETTINGS else "shared"
        elif pdu["type"] == MEMBER and pdu.get("state_key") == user:
            membership = pdu["content"]["membership"]
        out.append((setting, membership))
    return out


def allows(setting: str, membership: str, joined_later: bool) -> bool:
    """Rules 1-5 for one (visibility, membership) pair."""
    return (
        setting == "world_readable"
        or membership == "join"
        or (setting == "shared" and joined_later)
        or (setting == "invited" and membership == "invite")
    )


def visible(history: Sequence[Pdu], user: str) -> list[bool]:
    """Whether ``user`` may see each event, judged by the state at (just before) it."""
    states = replay(history, user)
    out = []
    for i, pdu in enumerate(history):
        (setting, membership), (setting_after, membership_after) = states[i], states[i + 1]
        later = any(m == "join" for _, m in states[i + 2 :])
        ok = allows(setting, membership, later)
        if pdu["type"] == HISTORY and pdu.get("state_key") == "":
            ok = ok or allows(setting_after, membership, later)
        if pdu["type"] == MEMBER and pdu.get("state_key") == user:
            ok = ok or allows(setting, membership_after, later)
        out.append(ok)
    return out


def sync_view(history: Sequence[Pdu], user: str, since: int) -> tuple[str, list[int]] | None:
    """Where a sync from ``since`` (events before index ``since`` are old; 0 for a complete
    sync with ``include_leave``) puts the room, and its timeline (indexes) when the limit is
    larger than the history. ``None``: the room is not in the response."""
    states, ok = replay(history, user), visible(history, user)
    changes = [
        i
        for i, pdu in enumerate(history)
        if i >= since and pdu["type"] == MEMBER and pdu.get("state_key") == user
    ]
    now = states[-1][1]

    def shown(upto: int) -> list[int]:
        return [i for i in range(since, upto + 1) if ok[i]]

    if not changes:
        return ("join", shown(len(history) - 1)) if states[since][1] == "join" else None
    if now == "join":
        return "join", shown(len(history) - 1)
    if now == "invite":
        return "invite", []
    last = changes[-1]
    if states[since][1] == "join" or any(states[i + 1][1] == "join" for i in changes):
        return "leave", shown(last)
    # Out of an invite (rejected, withdrawn) or banned without ever joining: the room
    # shows as left with only the user's own membership event (as clients need).
    return "leave", [last]


# --- random histories that respect room logic --------------------------------------------


class Step(NamedTuple):
    kind: str  # message, setting, redact, join, leave, invite, kick, ban, unban
    sender: int  # user slot; 0 is the creator, who stays joined
    arg: int | str = 0  # target slot, visibility setting or the step number of a message


KINDS = ("message", "join", "leave", "setting", "invite", "kick", "ban", "unban", "redact")
TARGETS = {
    "join": ("leave", "invite"),
    "leave": ("join", "invite"),
    "invite": ("leave",),
    "kick": ("join", "invite"),
    "ban": ("leave", "join", "invite"),
    "unban": ("ban",),
}


class Example(NamedTuple):
    others: int  # users 1..others besides the creator; user others+1 never joins
    initial: str  # the visibility the room is created with
    steps: list[Step]
    split: int  # the incremental sync starts after this many steps


@st.composite
def examples(draw: st.DrawFn) -> Example:
    others, initial = draw(st.integers(2, 3)), draw(st.sampled_from(SETTINGS))
    members = {0: "join"}
    messages: list[int] = []  # steps that sent a message not yet redacted
    steps: list[Step] = []
    for n in range(draw(st.integers(0, 16))):
        joined = sorted(u for u, m in members.items() if m == "join")
        able = {
            kind: [t for t in range(1, others + 1) if members.get(t, "leave") in before]
            for kind, before in TARGETS.items()
        }
        kinds = [k for k in KINDS if able.get(k, True) and (k != "redact" or messages)]
        kind = draw(st.sampled_from(kinds))
        targets = able.get(kind, [])
        if kind in ("join", "leave"):
            target = draw(st.sampled_from(targets))
            step = Step(kind, target, target)
            members[target] = kind
        elif kind in TARGETS:
            target = draw(st.sampled_from(targets))
            sender = draw(st.sampled_from([u for u in joined if u != target]))
            step = Step(kind, sender, target)
            members[target] = {"invite": "invite", "ban": "ban"}.get(kind, "leave")
        elif kind == "setting":
            step = Step(kind, draw(st.sampled_from(joined)), draw(st.sampled_from(SETTINGS)))
        elif kind == "redact":
            target = draw(st.sampled_from(messages))
            messages.remove(target)
            step = Step(kind, draw(st.sampled_from(joined)), target)
        else:
            step = Step("message", draw(st.sampled_from(joined)))
            messages.append(n)
        steps.append(step)
    return Example(others, initial, steps, draw(st.integers(0, len(steps))))


def log_messages(log: RoomLog, room: str, users: list[str], ex: Example) -> list[list[Pdu]]:
    """The log messages of the room's creation, then of each step."""
    created = log.create_room(room, users[0], name="Random")
    hv = created[4]["new_room_event"]["event"]
    assert hv["type"] == HISTORY
    hv["content"] = {"history_visibility": ex.initial}
    out = [created]
    sent: dict[int, Pdu] = {}
    for n, step in enumerate(ex.steps):
        sender = users[step.sender]
        if step.kind == "message":
            msg = log.message(room, sender, f"message {n}")
            sent[n] = msg["new_room_event"]["event"]
            out.append([msg])
        elif step.kind == "setting":
            content = {"history_visibility": step.arg}
            out.append([log.event(room, sender, HISTORY, content, "")])
        elif step.kind == "redact":
            target = sent[int(step.arg)]
            msg = log.event(room, sender, "m.room.redaction", {"reason": "spam"})
            because = msg["new_room_event"]["event"]
            because["redacts"] = target["_event_id"]
            body = {"RedactedEventID": target["_event_id"], "RedactedBecause": because}
            out.append([msg, {"type": "redacted_event", "redacted_event": body}])
        else:
            membership = {"invite": "invite", "ban": "ban", "join": "join"}.get(step.kind, "leave")
            target = users[int(step.arg)]
            out.append([log.member(room, target, membership, sender=sender)])
    return out


# --- checking the server against the model ------------------------------------------------

CLIENT = "/_matrix/client/v3"
FILTER = {"room": {"include_leave": True, "timeline": {"limit": 1000}}}


async def get(http: httpx.AsyncClient, token: str, path: str, **params: Any) -> httpx.Response:
    return await http.get(CLIENT + path, params=encode_params(params), headers=auth(token))


def check_events(events: list[dict[str, Any]], redacted: set[str]) -> list[str]:
    """Event IDs of served events; redacted ones must come without content."""
    for e in events:
        if e["event_id"] in redacted:
            assert e["content"] == {}, e
    return [e["event_id"] for e in events]


def check_sync(
    body: dict[str, Any],
    room: str,
    want: tuple[str, list[int]] | None,
    ids: list[str],
    rd: set[str],
) -> None:
    where = [k for k, rooms in body.get("rooms", {}).items() if room in rooms]
    if want is None or want == ("join", []):
        assert where in ([], ["join"]), where
        if where:
            assert body["rooms"]["join"][room]["timeline"]["events"] == []
        return
    kind, expected = want
    assert where == [kind]
    if kind in ("join", "leave"):
        served = check_events(body["rooms"][kind][room]["timeline"]["events"], rd)
        assert served == [ids[i] for i in expected]


async def page_all(
    http: httpx.AsyncClient, token: str, room: str, rd: set[str], **params: Any
) -> list[str] | None:
    """Every event ``/messages`` gives following ``end``; None when it answers 403."""
    out: list[str] = []
    for _ in range(200):
        r = await get(http, token, f"/rooms/{quote(room)}/messages", limit=4, **params)
        if r.status_code == 403 and not out:
            return None
        assert r.status_code == 200, r.text
        body = r.json()
        out += check_events(body["chunk"], rd)
        if "end" not in body:
            return out
        params["from"] = body["end"]
    raise AssertionError("/messages never stopped giving an end token")


async def check_user(
    http: httpx.AsyncClient,
    token: str,
    room: str,
    history: list[Pdu],
    user: str,
    since: tuple[str, int],
    rd: set[str],
) -> None:
    ids = [p["_event_id"] for p in history]
    ok = visible(history, user)
    allowed = [ids[i] for i in range(len(ids)) if ok[i]]
    complete = await sync(http, token, filter=FILTER)
    check_sync(complete, room, sync_view(history, user, 0), ids, rd)
    incremental = await sync(http, token, filter=FILTER, since=since[0], timeout=0)
    check_sync(incremental, room, sync_view(history, user, since[1]), ids, rd)

    backwards = await page_all(http, token, room, rd, dir="b", **{"from": complete["next_batch"]})
    forwards = await page_all(http, token, room, rd, dir="f")
    states = replay(history, user)
    if backwards is None or forwards is None:  # never a member, not world readable now
        assert all(m == "leave" for _, m in states) and states[-1][0] != "world_readable"
        assert backwards is forwards is None
    else:
        assert backwards == allowed[::-1]
        assert forwards == allowed

    for i, eid in enumerate(ids):
        r = await get(http, token, f"/rooms/{quote(room)}/event/{quote(eid)}")
        assert r.status_code == (200 if ok[i] else 404), (eid, r.text)
        if ok[i]:
            assert check_events([r.json()], rd) == [eid]
        r = await get(http, token, f"/rooms/{quote(room)}/context/{quote(eid)}", limit=4)
        assert r.status_code == (200 if ok[i] else 404), (eid, r.text)
        if ok[i]:
            body = r.json()
            k = allowed.index(eid)
            assert check_events([body["event"]], rd) == [eid]
            assert check_events(body["events_before"], rd) == allowed[max(0, k - 2) : k][::-1]
            assert check_events(body["events_after"], rd) == allowed[k + 1 : k + 3]


async def run_example(service: Service, http: httpx.AsyncClient, n: int, ex: Example) -> None:
    room = f"!random{n}:{SERVER}"
    users = [f"@r{n}u{i}:{SERVER}" for i in range(ex.others + 2)]
    tokens = [await service.add_device(u, "DEV") for u in users]
    batches = log_messages(RoomLog(SERVER, start_ts=1_700_000_000_000 + n), room, users, ex)
    messages = [m for batch in batches for m in batch]
    history = [m["new_room_event"]["event"] for m in messages if m["type"] == "new_room_event"]
    redacted = {m["redacted_event"]["RedactedEventID"] for m in messages if "redacted_event" in m}
    first = [m for batch in batches[: ex.split + 1] for m in batch]
    assert (await service.ingest(first)).rejected == 0
    token = (await sync(http, tokens[0]))["next_batch"]
    assert (await service.ingest(messages[len(first) :])).rejected == 0
    since = (token, sum(m["type"] == "new_room_event" for m in first))
    async with trio.open_nursery() as nursery:  # the users' checks overlap their I/O
        for user, device in zip(users, tokens, strict=True):
            nursery.start_soon(check_user, http, device, room, history, user, since, redacted)


async def test_visibility_matches_the_spec_model(service: Service, http: httpx.AsyncClient) -> None:
    numbers = itertools.count()

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(examples())
    def check(ex: Example) -> None:
        trio.from_thread.run(run_example, service, http, next(numbers), ex)

    await trio.to_thread.run_sync(check)
