"""Filter parsing, validation, matching and ``event_fields`` projection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trio_sync.errors import MatrixError
from trio_sync.filters import (
    EventFilter,
    Filter,
    RoomEventFilter,
    RoomFilter,
    apply_event_fields,
    parse_filter,
    parse_filter_json,
)

# Every field the spec defines, each set to a non-default value.
FULL_FILTER: dict[str, Any] = {
    "event_fields": ["type", "content", "sender", "content.m\\.relates_to"],
    "event_format": "federation",
    "presence": {
        "limit": 5,
        "types": ["m.presence"],
        "not_types": ["m.other"],
        "senders": ["@bob:example.com"],
        "not_senders": ["@alice:example.com"],
    },
    "account_data": {"types": [], "not_types": ["m.secret*"]},
    "room": {
        "rooms": ["!a:example.com", "!b:example.com"],
        "not_rooms": ["!726s6s6q:example.com"],
        "include_leave": True,
        "timeline": {
            "limit": 10,
            "types": ["m.room.message", "m.room.*"],
            "not_types": ["m.room.redaction"],
            "senders": ["@carol:example.com"],
            "not_senders": ["@spam:example.com"],
            "rooms": ["!a:example.com"],
            "not_rooms": ["!726s6s6q:example.com"],
            "contains_url": False,
            "lazy_load_members": True,
            "include_redundant_members": True,
            "unread_thread_notifications": True,
        },
        "state": {"types": ["m.room.*"], "lazy_load_members": True},
        "ephemeral": {"types": ["m.receipt", "m.typing"], "not_senders": ["@spam:example.com"]},
        "account_data": {"contains_url": True, "limit": 1},
    },
}


def assert_bad_json(obj: object) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        parse_filter(obj)
    assert info.value.status == 400
    assert info.value.errcode == "M_BAD_JSON"
    return info.value


# --- parsing and round trip ----------------------------------------------------------


def test_full_filter_round_trips_exactly() -> None:
    f = parse_filter(FULL_FILTER)
    assert f.to_json() == FULL_FILTER
    assert parse_filter(f.to_json()) == f
    assert parse_filter_json(json.dumps(f.to_json())) == f


def test_full_filter_fields_are_parsed() -> None:
    f = parse_filter(FULL_FILTER)
    assert f.event_format == "federation"
    assert f.event_fields == ("type", "content", "sender", "content.m\\.relates_to")
    assert f.presence == EventFilter(
        limit=5,
        types=("m.presence",),
        not_types=("m.other",),
        senders=("@bob:example.com",),
        not_senders=("@alice:example.com",),
    )
    assert f.account_data.types == ()
    assert f.room.include_leave is True
    assert f.room.timeline.lazy_load_members is True
    assert f.room.timeline.contains_url is False
    assert f.room.state == RoomEventFilter(types=("m.room.*",), lazy_load_members=True)
    assert f.room.account_data.contains_url is True
    assert f.timeline_limit() == 10


def test_spec_example_filter_parses() -> None:
    example = {
        "event_fields": ["type", "content", "sender"],
        "event_format": "client",
        "presence": {"not_senders": ["@alice:example.com"], "types": ["m.presence"]},
        "room": {
            "ephemeral": {
                "not_rooms": ["!726s6s6q:example.com"],
                "not_senders": ["@spam:example.com"],
                "types": ["m.receipt", "m.typing"],
            },
            "state": {"not_rooms": ["!726s6s6q:example.com"], "types": ["m.room.*"]},
            "timeline": {
                "limit": 10,
                "not_rooms": ["!726s6s6q:example.com"],
                "not_senders": ["@spam:example.com"],
                "types": ["m.room.message"],
            },
        },
    }
    f = parse_filter(example)
    assert parse_filter(f.to_json()) == f
    # "client" is the default, so the canonical form leaves it out.
    assert "event_format" not in f.to_json()


def test_empty_filter_is_default_and_serialises_to_empty_object() -> None:
    assert parse_filter({}) == Filter()
    assert Filter().to_json() == {}
    assert parse_filter_json(b"{}") == Filter()


def test_explicit_defaults_are_dropped_but_empty_allow_lists_kept() -> None:
    f = parse_filter(
        {
            "room": {
                "include_leave": False,
                "not_rooms": [],
                "timeline": {"lazy_load_members": False, "types": [], "not_senders": []},
            }
        }
    )
    # `types: []` means "nothing", unlike an absent list, so it must survive the round trip.
    assert f.to_json() == {"room": {"timeline": {"types": []}}}
    assert parse_filter(f.to_json()) == f


def test_unknown_keys_are_ignored() -> None:
    f = parse_filter(
        {
            "org.example.custom": {"anything": [1, 2]},
            "presence": {"rooms": "not checked here", "x": None},
            "room": {"timeline": {"limit": 3, "unknown": 0}},
        }
    )
    assert f == Filter(room=RoomFilter(timeline=RoomEventFilter(limit=3)))
    assert f.to_json() == {"room": {"timeline": {"limit": 3}}}


def test_timeline_limit_falls_back_to_default() -> None:
    assert parse_filter({}).timeline_limit() == 10
    assert parse_filter({}).timeline_limit(default=50) == 50
    assert parse_filter({"room": {"timeline": {"limit": 7}}}).timeline_limit(50) == 7


def test_room_ids_without_server_part_are_accepted() -> None:
    # Room version 12 room IDs are "!" plus a hash, with no ":server".
    f = parse_filter({"room": {"rooms": ["!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM"]}})
    assert f.room.allows_room("!31hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM")


# --- validation errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param([], id="top-level-list"),
        pytest.param("{}", id="top-level-string"),
        pytest.param(None, id="top-level-null"),
        pytest.param({"room": []}, id="room-not-object"),
        pytest.param({"room": None}, id="room-null"),
        pytest.param({"presence": "m.presence"}, id="presence-not-object"),
        pytest.param({"account_data": 1}, id="account-data-not-object"),
        pytest.param({"room": {"timeline": []}}, id="timeline-not-object"),
        pytest.param({"room": {"state": "x"}}, id="state-not-object"),
        pytest.param({"room": {"ephemeral": 0}}, id="ephemeral-not-object"),
        pytest.param({"room": {"account_data": True}}, id="room-account-data-not-object"),
        pytest.param({"presence": {"types": "m.presence"}}, id="types-not-list"),
        pytest.param({"presence": {"types": None}}, id="types-null"),
        pytest.param({"presence": {"types": [0]}}, id="types-item-int"),
        pytest.param({"presence": {"not_types": [None]}}, id="not-types-item-null"),
        pytest.param({"room": {"state": {"types": ["\ud800"]}}}, id="types-lone-surrogate"),
        pytest.param({"event_fields": "content.body"}, id="event-fields-not-list"),
        pytest.param({"event_fields": [["content"]]}, id="event-fields-item-list"),
        pytest.param({"event_format": "raw"}, id="event-format-unknown"),
        pytest.param({"event_format": None}, id="event-format-null"),
        pytest.param({"room": {"include_leave": "true"}}, id="include-leave-string"),
        pytest.param({"room": {"include_leave": 1}}, id="include-leave-int"),
        pytest.param({"room": {"timeline": {"lazy_load_members": "yes"}}}, id="lazy-load-str"),
        pytest.param({"room": {"state": {"include_redundant_members": 0}}}, id="redundant-int"),
        pytest.param({"room": {"timeline": {"unread_thread_notifications": None}}}, id="unread"),
        pytest.param({"room": {"timeline": {"contains_url": "false"}}}, id="contains-url-str"),
        pytest.param({"room": {"timeline": {"limit": 0}}}, id="limit-zero"),
        pytest.param({"room": {"timeline": {"limit": -5}}}, id="limit-negative"),
        pytest.param({"room": {"timeline": {"limit": True}}}, id="limit-bool"),
        pytest.param({"room": {"timeline": {"limit": 10.0}}}, id="limit-float"),
        pytest.param({"room": {"timeline": {"limit": "10"}}}, id="limit-string"),
        pytest.param({"presence": {"limit": 2**53}}, id="limit-beyond-json-safe"),
        pytest.param({"room": {"rooms": ["#alias:example.com"]}}, id="rooms-alias"),
        pytest.param({"room": {"rooms": "!a:example.com"}}, id="rooms-not-list"),
        pytest.param({"room": {"not_rooms": ["!"]}}, id="not-rooms-bare-sigil"),
        pytest.param({"room": {"timeline": {"rooms": ["a:example.com"]}}}, id="timeline-rooms"),
        pytest.param({"room": {"state": {"not_rooms": [7]}}}, id="state-not-rooms-int"),
        pytest.param({"presence": {"senders": ["alice:example.com"]}}, id="senders-no-sigil"),
        pytest.param({"presence": {"senders": ["@alice"]}}, id="senders-no-server"),
        pytest.param({"presence": {"senders": ["@:example.com"]}}, id="senders-no-localpart"),
        pytest.param({"room": {"timeline": {"not_senders": ["@bob:"]}}}, id="not-senders-empty"),
        pytest.param({"room": {"ephemeral": {"not_senders": ["!r:x"]}}}, id="not-senders-room"),
    ],
)
def test_wrongly_shaped_filter_is_bad_json(bad: object) -> None:
    assert_bad_json(bad)


def test_error_message_names_the_offending_field() -> None:
    err = assert_bad_json({"room": {"timeline": {"types": ["m.room.message", 3]}}})
    assert "room.timeline.types[1]" in err.message
    err = assert_bad_json({"room": {"state": {"lazy_load_members": "yes"}}})
    assert "room.state.lazy_load_members" in err.message


@pytest.mark.parametrize(
    "raw",
    ["{not json", "", "{'room': {}}", '{"room": {}', "NaN", b"\xff\xfe{", '{"limit": Infinity}'],
)
def test_inline_text_that_is_not_json_is_not_json(raw: str | bytes) -> None:
    with pytest.raises(MatrixError) as info:
        parse_filter_json(raw)
    assert info.value.status == 400
    assert info.value.errcode == "M_NOT_JSON"


@pytest.mark.parametrize("raw", ["[]", "null", '"{}"', "1", '{"room": {"timeline": []}}'])
def test_inline_json_of_wrong_shape_is_bad_json(raw: str) -> None:
    with pytest.raises(MatrixError) as info:
        parse_filter_json(raw)
    assert info.value.status == 400
    assert info.value.errcode == "M_BAD_JSON"


def test_inline_json_text_and_bytes_parse_the_same() -> None:
    text = '{"room": {"timeline": {"limit": 2, "types": ["m.room.*"]}}}'
    assert parse_filter_json(text) == parse_filter_json(text.encode()) != Filter()
    assert parse_filter_json(text).timeline_limit() == 2


# --- matching ------------------------------------------------------------------------


def event(
    type_: str = "m.room.message",
    sender: str = "@alice:example.com",
    room_id: str | None = "!a:example.com",
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": type_, "sender": sender, "content": content or {}}
    if room_id is not None:
        ev["room_id"] = room_id
    return ev


def test_wildcard_types() -> None:
    f = parse_filter({"presence": {"types": ["m.*"]}}).presence
    assert f.matches(event("m.room.message"))
    assert f.matches(event("m."))
    assert not f.matches(event("mx.foo"))
    assert not f.matches(event("org.m.foo"))

    everything = EventFilter(types=("*",))
    assert all(everything.matches(event(t)) for t in ("m.room.message", "x", "", "a.b.c"))

    middle = EventFilter(types=("m.*.member",))
    assert middle.matches(event("m.room.member"))
    assert not middle.matches(event("m.room.message"))


def test_types_other_regex_characters_are_literal() -> None:
    f = EventFilter(types=("m.room.messag?", "x.[ab]"))
    assert not f.matches(event("m.room.message"))
    assert f.matches(event("m.room.messag?"))
    assert f.matches(event("x.[ab]"))
    assert not f.matches(event("x.a"))
    # A literal "." only matches a dot.
    assert not EventFilter(types=("m.room",)).matches(event("mxroom"))


def test_not_types_beats_types_and_empty_types_matches_nothing() -> None:
    f = EventFilter(types=("m.room.*",), not_types=("m.room.redaction", "*.member"))
    assert f.matches(event("m.room.message"))
    assert not f.matches(event("m.room.redaction"))
    assert not f.matches(event("m.room.member"))
    assert not EventFilter(types=()).matches(event("m.room.message"))
    assert EventFilter().matches(event("anything.at.all"))


def test_not_senders_beats_senders() -> None:
    f = parse_filter(
        {
            "presence": {
                "senders": ["@alice:example.com", "@bob:example.com"],
                "not_senders": ["@bob:example.com"],
            }
        }
    ).presence
    assert f.matches(event(sender="@alice:example.com"))
    assert not f.matches(event(sender="@bob:example.com"))
    assert not f.matches(event(sender="@carol:example.com"))

    only_not = EventFilter(not_senders=("@spam:example.com",))
    assert only_not.matches(event(sender="@carol:example.com"))
    assert not only_not.matches(event(sender="@spam:example.com"))
    assert not EventFilter(senders=()).matches(event())


def test_event_without_sender_fails_sender_allow_list_only() -> None:
    typing = {"type": "m.typing", "content": {"user_ids": []}}
    assert not EventFilter(senders=("@alice:example.com",)).matches(typing)
    assert EventFilter(not_senders=("@alice:example.com",)).matches(typing)


def test_rooms_and_not_rooms() -> None:
    f = parse_filter(
        {
            "room": {
                "rooms": ["!a:example.com", "!b:example.com"],
                "not_rooms": ["!b:example.com"],
                "timeline": {"not_rooms": ["!a:example.com"]},
                "state": {"rooms": ["!c:example.com"]},
            }
        }
    )
    assert f.room.allows_room("!a:example.com")
    assert not f.room.allows_room("!b:example.com")  # not_rooms wins
    assert not f.room.allows_room("!c:example.com")  # not in rooms

    assert not f.room.timeline.allows_room("!a:example.com")
    assert f.room.timeline.allows_room("!z:example.com")
    assert not f.room.timeline.matches(event(room_id="!a:example.com"))
    assert f.room.timeline.matches(event(room_id="!z:example.com"))

    assert f.room.state.matches(event(room_id="!c:example.com"))
    assert not f.room.state.matches(event(room_id="!a:example.com"))
    # Events served per room (no room_id of their own) are left to allows_room.
    assert f.room.state.matches(event(room_id=None))

    assert RoomFilter().allows_room("!anything:example.com")
    assert not RoomFilter(rooms=()).allows_room("!anything:example.com")


def test_room_event_filter_still_applies_type_and_sender_rules() -> None:
    f = RoomEventFilter(types=("m.room.message",), not_senders=("@spam:example.com",))
    assert f.matches(event())
    assert not f.matches(event(type_="m.room.topic"))
    assert not f.matches(event(sender="@spam:example.com"))


def test_contains_url() -> None:
    image = event(content={"msgtype": "m.image", "url": "mxc://example.com/abc"})
    text = event(content={"msgtype": "m.text", "body": "hi"})
    bogus = event(content={"url": 42})
    no_content = {"type": "m.room.message", "sender": "@alice:example.com"}

    only_urls = parse_filter({"room": {"timeline": {"contains_url": True}}}).room.timeline
    assert only_urls.matches(image)
    assert not only_urls.matches(text)
    assert not only_urls.matches(bogus)  # url must be a string
    assert not only_urls.matches(no_content)

    no_urls = parse_filter({"room": {"timeline": {"contains_url": False}}}).room.timeline
    assert not no_urls.matches(image)
    assert no_urls.matches(text)
    assert no_urls.matches(bogus)
    assert no_urls.matches(no_content)

    either = RoomEventFilter()
    assert either.matches(image)
    assert either.matches(text)


# --- event_fields --------------------------------------------------------------------


MESSAGE: dict[str, Any] = {
    "type": "m.room.message",
    "sender": "@alice:example.com",
    "event_id": "$e1",
    "origin_server_ts": 1,
    "content": {
        "body": "hello",
        "msgtype": "m.text",
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
        "m\\foo": "backslash",
        "a.b": {"c": 1},
    },
    "unsigned": {"age": 5},
}


def test_event_fields_nested_path() -> None:
    assert apply_event_fields(MESSAGE, ["type", "content.body"]) == {
        "type": "m.room.message",
        "content": {"body": "hello"},
    }


def test_event_fields_escaped_dot_and_backslash() -> None:
    assert apply_event_fields(MESSAGE, ["content.m\\.relates_to"]) == {
        "content": {"m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}
    }
    assert apply_event_fields(MESSAGE, ["content.m\\.relates_to.rel_type"]) == {
        "content": {"m.relates_to": {"rel_type": "m.thread"}}
    }
    assert apply_event_fields(MESSAGE, ["content.m\\\\foo"]) == {"content": {"m\\foo": "backslash"}}
    assert apply_event_fields(MESSAGE, ["content.a\\.b.c"]) == {"content": {"a.b": {"c": 1}}}
    # Without the escape the dot is a separator, so nothing matches.
    assert apply_event_fields(MESSAGE, ["content.m.relates_to"]) == {}


def test_event_fields_other_backslashes_are_literal() -> None:
    ev = {"content": {"m\\xfoo": 1, "trailing\\": 2}}
    assert apply_event_fields(ev, ["content.m\\xfoo"]) == {"content": {"m\\xfoo": 1}}
    assert apply_event_fields(ev, ["content.trailing\\"]) == {"content": {"trailing\\": 2}}


def test_event_fields_merge_and_skip_missing() -> None:
    got = apply_event_fields(
        MESSAGE, ["content.body", "content.msgtype", "unsigned.nope", "nope", "type.x"]
    )
    assert got == {"content": {"body": "hello", "msgtype": "m.text"}}
    # A broader path keeps the whole object whichever order the paths come in.
    for fields in (["content.body", "content"], ["content", "content.body"]):
        assert apply_event_fields(MESSAGE, fields) == {"content": MESSAGE["content"]}
    assert apply_event_fields(MESSAGE, []) == {}


def test_event_fields_result_is_independent_of_the_event() -> None:
    got = apply_event_fields(MESSAGE, ["content", "unsigned"])
    got["content"]["m.relates_to"]["rel_type"] = "changed"
    got["unsigned"]["age"] = 0
    assert MESSAGE["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert MESSAGE["unsigned"]["age"] == 5


def test_filter_event_fields_drive_projection() -> None:
    f = parse_filter_json('{"event_fields": ["type", "content.m\\\\.relates_to.event_id"]}')
    assert f.event_fields == ("type", "content.m\\.relates_to.event_id")
    assert apply_event_fields(MESSAGE, f.event_fields) == {
        "type": "m.room.message",
        "content": {"m.relates_to": {"event_id": "$root"}},
    }
