"""Tests for the per-room-version event redaction algorithm."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trio_sync.redaction import KNOWN_ROOM_VERSIONS, redact, redact_for_client

ALL_VERSIONS = [str(n) for n in range(1, 13)]
PRE_V11 = [str(n) for n in range(1, 11)]
V11_ON = ["11", "12"]


def _event(event_type: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A federation-format event with every top-level key any version protects."""
    event: dict[str, Any] = {
        "event_id": "$ev:example.org",
        "type": event_type,
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "content": content,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:a": "sig"}},
        "depth": 7,
        "prev_events": ["$prev:example.org"],
        "prev_state": [],
        "auth_events": ["$create:example.org"],
        "origin": "example.org",
        "origin_server_ts": 1_700_000_000_000,
        "membership": "join",
        "unsigned": {"age": 1234, "transaction_id": "txn1"},
    }
    event.update(extra)
    return event


def _message() -> dict[str, Any]:
    return _event(
        "m.room.message",
        {"msgtype": "m.text", "body": "my password is hunter2", "format": "org.matrix.custom.html"},
    )


def _member(content: dict[str, Any]) -> dict[str, Any]:
    return _event("m.room.member", content, state_key="@bob:example.org")


def _create() -> dict[str, Any]:
    return _event(
        "m.room.create",
        {
            "creator": "@alice:example.org",
            "room_version": "10",
            "m.federate": False,
            "predecessor": {"room_id": "!old:example.org", "event_id": "$tomb:example.org"},
        },
        state_key="",
    )


def _power_levels() -> dict[str, Any]:
    return _event(
        "m.room.power_levels",
        {
            "ban": 50,
            "events": {"m.room.name": 50},
            "events_default": 0,
            "invite": 50,
            "kick": 50,
            "redact": 50,
            "state_default": 50,
            "users": {"@alice:example.org": 100},
            "users_default": 0,
            "notifications": {"room": 50},
        },
        state_key="",
    )


def _join_rules() -> dict[str, Any]:
    return _event(
        "m.room.join_rules",
        {
            "join_rule": "restricted",
            "allow": [{"type": "m.room_membership", "room_id": "!space:example.org"}],
        },
        state_key="",
    )


def _aliases() -> dict[str, Any]:
    return _event("m.room.aliases", {"aliases": ["#a:example.org"]}, state_key="example.org")


def _redaction_event() -> dict[str, Any]:
    return _event(
        "m.room.redaction",
        {"redacts": "$target:example.org", "reason": "spam from @eve"},
        redacts="$target:example.org",
    )


def _history_visibility() -> dict[str, Any]:
    return _event(
        "m.room.history_visibility",
        {"history_visibility": "joined", "extra": "secret"},
        state_key="",
    )


def _third_party_join() -> dict[str, Any]:
    return _member(
        {
            "membership": "join",
            "displayname": "Bob",
            "avatar_url": "mxc://example.org/bob",
            "join_authorised_via_users_server": "@alice:example.org",
            "third_party_invite": {
                "display_name": "bob@example.com",
                "signed": {"mxid": "@bob:example.org", "token": "tok", "signatures": {}},
            },
        }
    )


KITCHEN_SINK = [
    _message,
    _create,
    _power_levels,
    _join_rules,
    _aliases,
    _redaction_event,
    _history_visibility,
    _third_party_join,
]


# --- behaviour common to every room version ---------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_message_loses_its_body_but_keeps_identity(version: str) -> None:
    redacted = redact(_message(), version)

    assert redacted["content"] == {}
    assert redacted["event_id"] == "$ev:example.org"
    assert redacted["type"] == "m.room.message"
    assert redacted["sender"] == "@alice:example.org"
    assert redacted["room_id"] == "!room:example.org"
    assert redacted["origin_server_ts"] == 1_700_000_000_000
    assert "unsigned" not in redacted


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_unknown_top_level_keys_are_stripped(version: str) -> None:
    event = _message()
    event.update(
        {
            "user_id": "@alice:example.org",
            "age": 5,
            "prev_content": {"body": "old secret"},
            "com.example.custom": {"leak": True},
        }
    )

    redacted = redact(event, version)

    for key in ("user_id", "age", "prev_content", "com.example.custom", "unsigned"):
        assert key not in redacted


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_state_key_is_kept_even_when_empty(version: str) -> None:
    assert redact(_member({"membership": "leave"}), version)["state_key"] == "@bob:example.org"
    assert redact(_history_visibility(), version)["state_key"] == ""


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_input_is_not_mutated_and_output_is_independent(version: str) -> None:
    for make in KITCHEN_SINK:
        event = make()
        snapshot = copy.deepcopy(event)

        redacted = redact(event, version)
        assert event == snapshot

        # Editing the result must not reach back into the stored event.
        redacted["content"]["injected"] = True
        for value in redacted["content"].values():
            if isinstance(value, dict):
                value["injected"] = True
        redacted["prev_events"].append("$other:example.org")
        assert event == snapshot


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_missing_or_malformed_content_becomes_empty_object(version: str) -> None:
    no_content = _message()
    del no_content["content"]
    assert redact(no_content, version)["content"] == {}

    bad_content = _event("m.room.power_levels", ["not", "an", "object"], state_key="")  # type: ignore[arg-type]
    assert redact(bad_content, version)["content"] == {}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_history_visibility_keeps_only_the_setting(version: str) -> None:
    assert redact(_history_visibility(), version)["content"] == {"history_visibility": "joined"}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_member_profile_is_removed(version: str) -> None:
    content = redact(_third_party_join(), version)["content"]

    assert content["membership"] == "join"
    assert "displayname" not in content
    assert "avatar_url" not in content


# --- one test per rule change -----------------------------------------------


@pytest.mark.parametrize("version", PRE_V11)
def test_origin_membership_prev_state_kept_before_v11(version: str) -> None:
    redacted = redact(_message(), version)

    assert redacted["origin"] == "example.org"
    assert redacted["membership"] == "join"
    assert redacted["prev_state"] == []


@pytest.mark.parametrize("version", V11_ON)
def test_origin_membership_prev_state_dropped_from_v11(version: str) -> None:
    redacted = redact(_message(), version)

    assert "origin" not in redacted
    assert "membership" not in redacted
    assert "prev_state" not in redacted
    # The protocol keys that remain protected are still there.
    assert redacted["hashes"] == {"sha256": "abc"}
    assert redacted["auth_events"] == ["$create:example.org"]
    assert redacted["depth"] == 7


@pytest.mark.parametrize("version", ["1", "5"])
def test_aliases_kept_up_to_v5(version: str) -> None:
    assert redact(_aliases(), version)["content"] == {"aliases": ["#a:example.org"]}


@pytest.mark.parametrize("version", ["6", "7", "10", "11", "12"])
def test_aliases_removed_from_v6(version: str) -> None:
    assert redact(_aliases(), version)["content"] == {}


def test_join_rules_allow_kept_from_v8_not_v7() -> None:
    assert redact(_join_rules(), "7")["content"] == {"join_rule": "restricted"}
    for version in ["8", "9", "10", "11", "12"]:
        assert redact(_join_rules(), version)["content"] == _join_rules()["content"]


def test_join_authorised_via_users_server_kept_from_v9_not_v8() -> None:
    event = _member(
        {
            "membership": "join",
            "displayname": "Bob",
            "join_authorised_via_users_server": "@alice:example.org",
        }
    )

    assert redact(event, "8")["content"] == {"membership": "join"}
    for version in ["9", "10", "11", "12"]:
        assert redact(event, version)["content"] == {
            "membership": "join",
            "join_authorised_via_users_server": "@alice:example.org",
        }


@pytest.mark.parametrize("version", PRE_V11)
def test_create_keeps_only_creator_before_v11(version: str) -> None:
    assert redact(_create(), version)["content"] == {"creator": "@alice:example.org"}


@pytest.mark.parametrize("version", V11_ON)
def test_create_keeps_all_content_from_v11(version: str) -> None:
    assert redact(_create(), version)["content"] == _create()["content"]


def test_power_levels_invite_kept_from_v11_only() -> None:
    expected_v1 = {
        "ban": 50,
        "events": {"m.room.name": 50},
        "events_default": 0,
        "kick": 50,
        "redact": 50,
        "state_default": 50,
        "users": {"@alice:example.org": 100},
        "users_default": 0,
    }
    for version in PRE_V11:
        assert redact(_power_levels(), version)["content"] == expected_v1
    for version in V11_ON:
        assert redact(_power_levels(), version)["content"] == {**expected_v1, "invite": 50}


def test_redaction_keeps_redacts_in_content_from_v11() -> None:
    for version in PRE_V11:
        redacted = redact(_redaction_event(), version)
        assert redacted["content"] == {}
        assert "redacts" not in redacted
    for version in V11_ON:
        redacted = redact(_redaction_event(), version)
        # The reason is user-supplied text and is always removed.
        assert redacted["content"] == {"redacts": "$target:example.org"}
        assert "redacts" not in redacted


def test_third_party_invite_reduced_to_signed_from_v11() -> None:
    for version in PRE_V11:
        assert "third_party_invite" not in redact(_third_party_join(), version)["content"]
    for version in V11_ON:
        assert redact(_third_party_join(), version)["content"]["third_party_invite"] == {
            "signed": {"mxid": "@bob:example.org", "token": "tok", "signatures": {}}
        }


def test_v12_redacts_exactly_like_v11() -> None:
    for make in KITCHEN_SINK:
        assert redact(make(), "12") == redact(make(), "11")


# --- unknown room versions --------------------------------------------------


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a nested JSON object."""
    if not isinstance(value, dict):
        return set()
    paths: set[str] = set()
    for key, item in value.items():
        path = f"{prefix}/{key}"
        paths.add(path)
        paths |= _keys(item, path)
    return paths


@pytest.mark.parametrize("version", ["13", "org.matrix.msc9999", ""])
def test_unknown_version_keeps_no_more_than_any_known_version(version: str) -> None:
    assert version not in KNOWN_ROOM_VERSIONS
    for make in KITCHEN_SINK:
        unknown = _keys(redact(make(), version))
        for known in KNOWN_ROOM_VERSIONS:
            assert unknown <= _keys(redact(make(), known)), (make.__name__, known)


def test_unknown_version_still_keeps_what_every_version_keeps() -> None:
    redacted = redact(_create(), "13")
    assert redacted["content"] == {"creator": "@alice:example.org"}
    assert "origin" not in redacted
    assert redact(_join_rules(), "13")["content"] == {"join_rule": "restricted"}
    assert "invite" not in redact(_power_levels(), "13")["content"]
    assert redact(_redaction_event(), "13")["content"] == {}


# --- client format ----------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_redact_for_client_carries_only_redacted_because(version: str) -> None:
    event = {
        "event_id": "$ev:example.org",
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "secret"},
        "unsigned": {"age": 99, "transaction_id": "txn1", "m.relations": {}},
    }
    because: dict[str, Any] = {
        "event_id": "$red:example.org",
        "type": "m.room.redaction",
        "sender": "@mod:example.org",
        "redacts": "$ev:example.org",
        "content": {"reason": "spam"},
    }

    redacted = redact_for_client(event, version, because)

    assert redacted == {
        "event_id": "$ev:example.org",
        "type": "m.room.message",
        "room_id": "!room:example.org",
        "sender": "@alice:example.org",
        "origin_server_ts": 1_700_000_000_000,
        "content": {},
        "unsigned": {"redacted_because": because},
    }
    # Later edits to the redaction event the caller holds do not leak in.
    because["content"]["reason"] = "changed"
    assert redacted["unsigned"]["redacted_because"]["content"] == {"reason": "spam"}
