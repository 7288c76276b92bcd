"""Serving a stored client event: the viewer's ``unsigned`` keys spliced onto the stored
text when it has no ``unsigned`` of its own, the same JSON as a parse and dump."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_sync.client_format import STORED_UNSIGNED, with_unsigned
from trio_sync.storage.engine import FOREVER
from trio_sync.storage.rooms import TimelineEvent
from trio_sync.storage.visibility import RoomAccess
from trio_sync.sync.timeline import Viewer

from ..served import reference_serve

ME = "@me:example.org"
OTHER = "@other:example.org"
ROOM = "!room:example.org"

#: Strings that put the text ``"unsigned"`` (and look-alikes) where no key is.
TRICKY = st.sampled_from(
    ["unsigned", '"unsigned"', '"unsigned":{}}', "x\\", "}", "ünïcödé 🎉", "\u2028", "\x00"]
)
TEXT = TRICKY | st.text(max_size=12)
KEYS = st.sampled_from(["body", "unsigned", "msgtype", "m.relates_to", "é", "🎉"]) | TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def stored_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A client event as ingest builds it (``room_id`` first, stored ``unsigned`` last,
    perhaps empty), and its stored text: orjson's, or another writer's layout (spaces,
    ``\\u`` escapes), as migration 21 leaves on PostgreSQL."""
    event: dict[str, Any] = {
        "room_id": ROOM,
        "content": draw(st.dictionaries(KEYS, VALUES, max_size=4)),
        "event_id": "$" + draw(TEXT),
        "origin_server_ts": draw(st.integers(0, 2**53)),
        "sender": draw(st.sampled_from([ME, OTHER])),
        "type": draw(st.sampled_from(["m.room.message", "m.room.member", "m.room.topic"])),
    }
    if draw(st.booleans()):
        event["state_key"] = draw(st.sampled_from(["", ME]))
    if draw(st.booleans()):
        event["redacts"] = "$" + draw(TEXT)
    if draw(st.integers(0, 3)) == 0:
        keys = st.sampled_from([*STORED_UNSIGNED, "age"])
        event["unsigned"] = draw(st.dictionaries(keys, VALUES, max_size=2))
    layout = draw(st.sampled_from(["orjson", "spaced", "ascii"]))
    if layout == "orjson":
        text = orjson.dumps(event).decode()
    else:
        text = json.dumps(event, ensure_ascii=layout == "ascii")
    return event, text


@st.composite
def accesses(draw: st.DrawFn) -> RoomAccess | None:
    membership = draw(st.sampled_from([None, "none", "join", "leave", "invite"]))
    if membership is None:
        return None
    access = RoomAccess(ME)
    if membership != "none":
        access.membership.add(0, FOREVER, membership)
    return access


FIELDS = st.sampled_from(
    ["type", "content", "content.body", "unsigned", "unsigned.age", "unsigned.m\\.relations"]
)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    stored=stored_events(),
    txn=st.none() | st.tuples(st.sampled_from([1, 2]), TEXT),
    session_id=st.none() | st.sampled_from([1, 2]),
    now_ms=st.just(0) | st.integers(0, 2**53),
    fields=st.none() | st.lists(FIELDS, max_size=3).map(tuple),
    access=accesses(),
    relations=st.none() | st.dictionaries(st.sampled_from(["m.thread", "m.replace"]), VALUES),
)
def test_served_event_is_the_parsed_and_dumped_one(
    stored: tuple[dict[str, Any], str],
    txn: tuple[int, str] | None,
    session_id: int | None,
    now_ms: int,
    fields: tuple[str, ...] | None,
    access: RoomAccess | None,
    relations: dict[str, Any] | None,
) -> None:
    event, text = stored
    ev = TimelineEvent(
        pos=7,
        depth=3,
        event_id=event["event_id"],
        type=event["type"],
        state_key=event.get("state_key"),
        sender=event["sender"],
        origin_server_ts=event["origin_server_ts"],
        txn_session=None if txn is None else txn[0],
        txn_id=None if txn is None else txn[1],
        json=text,
    )
    viewer = Viewer(ME, session_id=session_id, fields=fields, now_ms=now_ms)
    served = viewer.serve(ev, access, relations)
    expected = reference_serve(viewer, ev, access, relations)
    assert orjson.loads(served) == orjson.loads(expected)
    if text == orjson.dumps(event).decode():
        assert served == expected


MESSAGE = orjson.dumps(
    {
        "room_id": ROOM,
        "content": {"msgtype": "m.text", "body": "hello 🎉"},
        "event_id": "$m",
        "origin_server_ts": 1_000,
        "sender": ME,
        "type": "m.room.message",
    }
).decode()


def message(txn_id: str | None = None) -> TimelineEvent:
    return TimelineEvent(7, 3, "$m", "m.room.message", None, ME, 1_000, 1, txn_id, MESSAGE)


def test_a_plain_message_is_served_without_a_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = Viewer(ME, session_id=1, now_ms=1_500)
    access = RoomAccess.joined_from(ME, 0)
    relations = {"m.thread": {"count": 2, "current_user_participated": True}}
    expected = reference_serve(viewer, message("t1"), access, relations)

    def no_parse(*args: object) -> object:
        raise AssertionError("the stored event was parsed")

    monkeypatch.setattr(orjson, "loads", no_parse)
    assert viewer.serve(message("t1"), access, relations) == expected
    assert expected == (
        MESSAGE[:-1] + ',"unsigned":{"age":500,"membership":"join","transaction_id":"t1",'
        '"m.relations":{"m.thread":{"count":2,"current_user_participated":true}}}}'
    )


def test_unsigned_is_there_even_with_nothing_to_put_in_it() -> None:
    served = Viewer(OTHER).serve(message("t1"), None)
    assert orjson.loads(served)["unsigned"] == {}


@pytest.mark.parametrize(
    "text",
    [
        '{"room_id":"!r","content":{"body":"unsigned"},"type":"t"}',
        '{"room_id":"!r","content":{"unsigned":1},"type":"t"}',
        '{"room_id":"!r","type":"t","unsigned":{}}',
        '{"room_id":"!r","type":"t","unsigned":{"replaces_state":"$x"}}',
        '{"room_id":"!r","type":"t"} ',
        "{}",
        "{ }",
    ],
)
def test_text_that_may_hold_unsigned_or_has_no_key_is_not_spliced(text: str) -> None:
    assert with_unsigned(text, '{"age":1}') is None


def test_splice_appends_unsigned_as_the_last_key() -> None:
    text = '{"room_id": "!r", "content": {"body": "x"}}'
    spliced = with_unsigned(text, '{"age":1}')
    assert spliced == '{"room_id": "!r", "content": {"body": "x"},"unsigned":{"age":1}}'
    assert orjson.loads(spliced) == {
        "room_id": "!r",
        "content": {"body": "x"},
        "unsigned": {"age": 1},
    }
