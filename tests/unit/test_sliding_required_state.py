"""The pure rules of ``sliding/required_state.py``: which pairs cover which, what a
request newly asks for, and what a connection remembers after a room is sent."""

from __future__ import annotations

from trio_sync.sliding.request import RequiredState
from trio_sync.sliding.required_state import (
    MAX_REMEMBERED,
    covers,
    newly_required,
    plan_update,
    remember_lazy,
)
from trio_sync.storage.rooms import MEMBER, StateEvent


def rs(*pairs: tuple[str, str]) -> RequiredState:
    return RequiredState(frozenset(pairs))


def state(etype: str, key: str) -> StateEvent:
    return StateEvent(f"${etype}/{key}", etype, key, "@s:x", "{}")


def test_covers_follows_the_wildcards() -> None:
    assert covers(rs(("*", "*")), ("m.room.member", "*"))
    assert covers(rs(("m.room.member", "*")), ("m.room.member", "@a:x"))
    assert not covers(rs(("m.room.member", "@a:x")), ("m.room.member", "*"))
    assert covers(rs(("*", "")), ("m.room.name", ""))
    assert covers(rs(("*", "")), ("*", ""))
    assert not covers(rs(("m.room.name", "")), ("*", ""))
    assert not covers(rs(("m.room.member", "*")), ("*", "*"))


def test_newly_required_leaves_out_what_is_held_and_lazy() -> None:
    had = rs(("m.room.member", "*"), ("m.room.name", ""))
    want = rs(("m.room.member", "@a:x"), ("m.room.member", "$LAZY"), ("m.room.topic", ""))
    assert newly_required(had, want) == rs(("m.room.topic", ""))


def test_dropped_pairs_are_remembered_until_they_change_unseen() -> None:
    had = rs(("m.room.name", ""), ("m.room.topic", ""), ("m.room.create", ""))
    want = rs(("m.room.name", ""))
    delta = [state("m.room.topic", ""), state("m.room.name", "")]
    update = plan_update(had, (), want, delta, [])
    assert [(s.type, s.state_key) for s in update.changed] == [("m.room.name", "")]
    assert update.effective == rs(("m.room.name", ""), ("m.room.create", ""))
    assert update.read == RequiredState()


def test_dropped_wildcards_are_forgotten() -> None:
    had = rs(("m.room.member", "*"), ("*", "*"))
    update = plan_update(had, (), rs(("m.room.name", "")), [], [])
    assert update.effective == rs(("m.room.name", ""))


def test_at_most_max_remembered_dropped_keys_per_type() -> None:
    many = [("m.room.member", f"@u{n}:x") for n in range(MAX_REMEMBERED + 20)]
    update = plan_update(rs(*many, ("m.room.name", "")), (), rs(), [], [])
    kept = update.effective.pairs
    assert len([p for p in kept if p[0] == "m.room.member"]) == MAX_REMEMBERED
    assert ("m.room.name", "") in kept


def test_lazy_members_held_unless_their_membership_changed_unseen() -> None:
    lazy = rs(("m.room.member", "$LAZY"))
    # Not lazy now: Bob's membership change is not sent, and he is forgotten.
    update = plan_update(lazy, ("@a:x", "@b:x"), rs(), [state(MEMBER, "@b:x")], [])
    assert update.changed == [] and update.lazy_members == ("@a:x",)
    # Lazy again, both in the timeline: only Bob is read.
    again = plan_update(rs(), update.lazy_members, lazy, [], ["@a:x", "@b:x"])
    assert again.read_members == ["@b:x"]
    assert again.lazy_members == ("@b:x", "@a:x")
    # A member held through an explicit pair is not read for lazy loading.
    explicit = plan_update(rs((MEMBER, "@c:x")), (), lazy, [], ["@c:x"])
    assert explicit.read_members == []
    assert explicit.lazy_members == ("@c:x",)


def test_lazy_members_remembered_are_capped_most_recently_needed_first() -> None:
    lazy = rs((MEMBER, "$LAZY"))
    old = tuple(f"@old{n}:x" for n in range(MAX_REMEMBERED))
    # The response's users first (the user, then its senders newest first), then those
    # held, most recent first; the oldest held ones fall out.
    update = plan_update(lazy, old, lazy, [], ["@s1:x", "@s2:x", old[-1], "@me:x"])
    assert update.lazy_members[:4] == ("@me:x", old[-1], "@s2:x", "@s1:x")
    assert update.lazy_members[4:] == old[: MAX_REMEMBERED - 4]
    assert update.read_members == ["@s1:x", "@s2:x", "@me:x"]
    # More users in one response than the cap: the user and the newest senders are kept.
    many = [f"@n{n}:x" for n in range(MAX_REMEMBERED + 5)]
    assert remember_lazy([*many, "@me:x"], old) == ("@me:x", *reversed(many))[:MAX_REMEMBERED]
