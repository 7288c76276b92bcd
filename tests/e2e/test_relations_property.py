"""Bundled aggregations and ``/relations`` on random room histories, against a model.

Hypothesis draws histories of messages, thread replies, edits (valid and invalid, with
colliding timestamps), references, reactions, redactions, joins, leaves and history
visibility changes, and whether one user ignores another. The model (the visibility
model of ``test_visibility_property`` plus the spec's aggregation rules, written here
without the server's code) says what each user's ``unsigned.m.relations`` of each event
holds; ``/messages``, ``/sync``, ``/event`` and ``/relations`` must agree.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx
import trio
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from trio_sync import Service
from trio_sync.roomlog import RoomLog

from .conftest import SERVER, auth, encode_params, sync
from .test_visibility_property import HISTORY, SETTINGS, Pdu, visible

#: Edits drawn more often: choosing among several needs several.
RELATED = ("m.thread", "m.replace", "m.replace", "m.replace", "m.reference", "m.annotation")
KINDS = ("message", "related", "related", "related", "redact", "join", "leave", "setting")


class Step(NamedTuple):
    kind: str
    sender: int
    #: related: (rel_type, index of the parent step, with m.new_content, timestamp slot);
    #: redact: index of the target step; setting: the visibility; join/leave: unused.
    arg: Any = None


class Example(NamedTuple):
    initial: str
    steps: list[Step]
    #: (user slot, ignored user slot), if someone ignores someone.
    ignore: tuple[int, int] | None


USERS = 3  # slot 0 created the room and stays; 1 and 2 come and go


@st.composite
def examples(draw: st.DrawFn) -> Example:
    joined = {0, 1, 2}
    targets: list[int] = []  # steps whose event can be related to (not redacted)
    steps: list[Step] = []
    for n in range(draw(st.integers(1, 20))):
        kinds = [
            k
            for k in KINDS
            if (k != "related" or targets)
            and (k != "redact" or targets)
            and (k != "join" or len(joined) < USERS)
            and (k != "leave" or len(joined) > 1)
        ]
        kind = draw(st.sampled_from(kinds))
        sender = draw(st.sampled_from(sorted(joined)))
        if kind == "message":
            step = Step(kind, sender)
            targets.append(n)
        elif kind == "related":
            rel = draw(st.sampled_from(RELATED))
            # Few parents, so that they gather several children of a kind.
            parent = draw(st.sampled_from(targets[:3]))
            if rel == "m.replace" and steps[parent].sender in joined and draw(st.booleans()):
                sender = steps[parent].sender  # mostly valid edits, by the original sender
            new_content = draw(st.integers(0, 3)) > 0
            step = Step(kind, sender, (rel, parent, new_content, draw(st.integers(0, 1))))
            targets.append(n)
        elif kind == "redact":
            target = draw(st.sampled_from(targets))
            targets.remove(target)
            step = Step(kind, sender, target)
        elif kind == "join":
            who = draw(st.sampled_from(sorted(set(range(USERS)) - joined)))
            joined.add(who)
            step = Step(kind, who)
        elif kind == "leave":
            who = draw(st.sampled_from(sorted(joined - {0})))
            joined.discard(who)
            step = Step(kind, who)
        else:
            step = Step(kind, sender, draw(st.sampled_from(SETTINGS)))
        steps.append(step)
    ignore = draw(st.none() | st.sampled_from([(0, 1), (1, 2), (2, 0)]))
    return Example(draw(st.sampled_from(SETTINGS)), steps, ignore)


def log_messages(
    log: RoomLog, room: str, users: list[str], ex: Example
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The log messages of the example, and the event ID of each step's event."""
    created = log.create_room(room, users[0], name="Related")
    created[4]["new_room_event"]["event"]["content"] = {"history_visibility": ex.initial}
    out = list(created)
    out += [log.member(room, u, "join") for u in users[1:]]
    ids: dict[int, str] = {}
    for n, step in enumerate(ex.steps):
        sender = users[step.sender]
        if step.kind == "message":
            message = log.message(room, sender, f"m{n}")
        elif step.kind == "related":
            rel, parent, new_content, ts = step.arg
            content: dict[str, Any] = {
                "msgtype": "m.text",
                "body": f"r{n}",
                "m.relates_to": {"rel_type": rel, "event_id": ids[parent]},
            }
            if new_content:
                content["m.new_content"] = {"msgtype": "m.text", "body": f"new {n}"}
            message = log.event(room, sender, "m.room.message", content)
            if rel == "m.replace":
                # Few distinct timestamps: ties are broken by event ID.
                message["new_room_event"]["event"]["origin_server_ts"] = 1_800_000_000_000 + ts
        elif step.kind == "redact":
            message = log.event(room, sender, "m.room.redaction", {"reason": "r"})
            because = message["new_room_event"]["event"]
            because["redacts"] = ids[int(step.arg)]
            out.append(message)
            body = {"RedactedEventID": ids[int(step.arg)], "RedactedBecause": because}
            message = {"type": "redacted_event", "redacted_event": body}
        elif step.kind == "setting":
            message = log.event(room, sender, HISTORY, {"history_visibility": step.arg}, "")
        else:
            message = log.member(room, sender, step.kind)
        if message["type"] == "new_room_event":
            ids[n] = message["new_room_event"]["event"]["_event_id"]
        out.append(message)
    return out, ids


# --- the model ------------------------------------------------------------------------------


class Model:
    """What one user's aggregations hold, from the room's history (oldest first)."""

    def __init__(
        self, history: Sequence[Pdu], redacted: set[str], user: str, ignored: set[str]
    ) -> None:
        self.user = user
        self.by_id = {p["_event_id"]: p for p in history}
        ok = visible(history, user)
        self.seen = [
            p["_event_id"]
            for p, v in zip(history, ok, strict=True)
            if v and (p["sender"] == user or p["sender"] not in ignored)
        ]
        self.redacted = redacted
        seen = set(self.seen)
        #: parent → [(rel_type, child)] of children that count, oldest first.
        self.children: dict[str, list[tuple[str, Pdu]]] = {}
        for p in history:
            rel = self.relation(p)
            if rel is not None and p["_event_id"] in seen:
                self.children.setdefault(rel[1], []).append((rel[0], p))

    def relation(self, p: Pdu) -> tuple[str, str] | None:
        if p["_event_id"] in self.redacted:
            return None
        rel = p["content"].get("m.relates_to")
        return None if rel is None else (rel["rel_type"], rel["event_id"])

    def bundle(self, eid: str, nested: bool = True) -> dict[str, Any]:
        """The expected bundle in summary form (see :func:`summary`)."""
        parent = self.by_id[eid]
        kids = self.children.get(eid, [])
        out: dict[str, Any] = {}
        parent_rel = self.relation(parent)
        edits = [
            c
            for t, c in kids
            if t == "m.replace"
            and eid not in self.redacted
            and (parent_rel is None or parent_rel[0] != "m.replace")
            and c["sender"] == parent["sender"]
            and c["type"] == parent["type"]
            and "m.new_content" in c["content"]
        ]
        if edits:
            best = max(edits, key=lambda c: (c["origin_server_ts"], c["_event_id"]))
            out["m.replace"] = best["_event_id"]
        thread = [c for t, c in kids if t == "m.thread"]
        if thread:
            latest = thread[-1]["_event_id"]
            out["m.thread"] = (
                latest,
                len(thread),
                parent["sender"] == self.user or any(c["sender"] == self.user for c in thread),
                self.bundle(latest, nested=False) if nested else None,
            )
        refs = [c["_event_id"] for t, c in kids if t == "m.reference"]
        if refs:
            out["m.reference"] = refs
        return out

    def related(self, eid: str) -> list[str]:
        """``/relations/{eid}``: every counted child, newest first."""
        return [c["_event_id"] for _, c in reversed(self.children.get(eid, []))]


def summary(event: dict[str, Any], nested: bool = True) -> dict[str, Any]:
    """A served event's ``unsigned.m.relations`` in the model's form."""
    bundle = event.get("unsigned", {}).get("m.relations", {})
    out: dict[str, Any] = {}
    if "m.replace" in bundle:
        out["m.replace"] = bundle["m.replace"]["event_id"]
    if "m.thread" in bundle:
        t = bundle["m.thread"]
        inner = summary(t["latest_event"], nested=False) if nested else None
        out["m.thread"] = (
            t["latest_event"]["event_id"],
            t["count"],
            t["current_user_participated"],
            inner,
        )
    if "m.reference" in bundle:
        out["m.reference"] = [r["event_id"] for r in bundle["m.reference"]["chunk"]]
    return out


# --- checking -------------------------------------------------------------------------------


async def check_user(
    http: httpx.AsyncClient, token: str, room: str, model: Model, is_joined: bool
) -> None:
    headers = auth(token)
    served: list[dict[str, Any]] = []
    params: dict[str, Any] = {"dir": "b", "limit": 7}
    for _ in range(100):
        r = await http.get(
            f"/_matrix/client/v3/rooms/{quote(room)}/messages",
            params=encode_params(params),
            headers=headers,
        )
        if r.status_code == 403:
            assert not model.seen
            return
        assert r.status_code == 200, r.text
        served += r.json()["chunk"]
        if "end" not in r.json():
            break
        params["from"] = r.json()["end"]
    assert [e["event_id"] for e in served] == model.seen[::-1]
    for e in served:
        assert summary(e) == model.bundle(e["event_id"]), e
    if is_joined:
        body = await sync(http, token, filter={"room": {"timeline": {"limit": 1000}}})
        for e in body["rooms"]["join"][room]["timeline"]["events"]:
            assert summary(e) == model.bundle(e["event_id"]), e
    for eid in model.seen:
        r = await http.get(
            f"/_matrix/client/v3/rooms/{quote(room)}/event/{quote(eid)}", headers=headers
        )
        assert r.status_code == 200, r.text
        assert summary(r.json()) == model.bundle(eid)
        listed: list[str] = []
        rparams: dict[str, Any] = {"limit": 2}
        for _ in range(100):
            r = await http.get(
                f"/_matrix/client/v1/rooms/{quote(room)}/relations/{quote(eid)}",
                params=rparams,
                headers=headers,
            )
            assert r.status_code == 200, r.text
            listed += [e["event_id"] for e in r.json()["chunk"]]
            if "next_batch" not in r.json():
                break
            rparams["from"] = r.json()["next_batch"]
        assert listed == model.related(eid)


async def run_example(service: Service, http: httpx.AsyncClient, n: int, ex: Example) -> None:
    room = f"!related{n}:{SERVER}"
    users = [f"@p{n}u{i}:{SERVER}" for i in range(USERS)]
    tokens = [await service.add_device(u, "DEV") for u in users]
    messages, _ = log_messages(RoomLog(SERVER, start_ts=1_700_000_000_000 + n), room, users, ex)
    assert (await service.ingest(messages)).rejected == 0
    history = [m["new_room_event"]["event"] for m in messages if m["type"] == "new_room_event"]
    redacted = {m["redacted_event"]["RedactedEventID"] for m in messages if "redacted_event" in m}
    ignored: dict[int, set[str]] = {i: set() for i in range(USERS)}
    if ex.ignore is not None:
        who, whom = ex.ignore
        ignored[who].add(users[whom])
        r = await http.put(
            f"/_matrix/client/v3/user/{quote(users[who])}/account_data/m.ignored_user_list",
            json={"ignored_users": {users[whom]: {}}},
            headers=auth(tokens[who]),
        )
        assert r.status_code == 200, r.text
    joined = {0, 1, 2}
    for step in ex.steps:
        if step.kind == "join":
            joined.add(step.sender)
        elif step.kind == "leave":
            joined.discard(step.sender)
    for i, user in enumerate(users):
        model = Model(history, redacted, user, ignored[i])
        await check_user(http, tokens[i], room, model, i in joined)


async def test_aggregations_match_the_model(service: Service, http: httpx.AsyncClient) -> None:
    numbers = itertools.count()
    quiet = [p for p in Phase if p is not Phase.explain]

    @settings(max_examples=30, deadline=None, derandomize=True, database=None, phases=quiet)
    @given(examples())
    def check(ex: Example) -> None:
        trio.from_thread.run(run_example, service, http, next(numbers), ex)

    await trio.to_thread.run_sync(check)
