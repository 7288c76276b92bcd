"""The spec's history-visibility rules over membership and setting intervals."""

from __future__ import annotations

from trio_sync.storage.engine import FOREVER
from trio_sync.storage.visibility import HISTORY_VISIBILITY, MEMBER, RoomAccess, setting_of

ME = "@me:example.org"
MSG = "m.room.message"


def access(settings: list[tuple[int, str]], memberships: list[tuple[int, str]]) -> RoomAccess:
    """Intervals from ``(start, value)`` lists: each lasts until the next one starts."""
    a = RoomAccess(ME)
    for target, pairs in ((a.visibility, settings), (a.membership, memberships)):
        for i, (start, value) in enumerate(pairs):
            end = pairs[i + 1][0] if i + 1 < len(pairs) else FOREVER
            target.add(start, end, value)
    return a


def test_unknown_or_missing_setting_is_shared() -> None:
    assert setting_of({"history_visibility": "nonsense"}) == "shared"
    assert setting_of(None) == "shared"
    assert setting_of({"history_visibility": "joined"}) == "joined"


def test_shared_shows_history_from_before_a_later_join() -> None:
    a = access([(1, "shared")], [(10, "join")])
    assert a.visible(5, MSG, None)
    assert a.everything_visible(0, 20)


def test_shared_hides_what_came_after_a_leave_with_no_later_join() -> None:
    a = access([(1, "shared")], [(10, "join"), (20, "leave")])
    assert a.visible(15, MSG, None)
    assert a.visible(5, MSG, None)
    assert not a.visible(25, MSG, None)
    assert not a.everything_visible(0, 30)


def test_joined_hides_history_from_before_the_join() -> None:
    a = access([(0, "joined")], [(10, "join")])
    assert not a.visible(5, MSG, None)
    assert a.visible(11, MSG, None)
    # Its own join is visible by the membership after it.
    assert a.visible(10, MEMBER, ME)
    assert a.earliest_visible() == 10


def test_invited_shows_events_from_the_invite_on() -> None:
    a = access([(1, "invited")], [(10, "invite"), (20, "join")])
    assert not a.visible(9, MSG, None)
    assert a.visible(12, MSG, None)
    assert a.visible(10, MEMBER, ME)


def test_world_readable_is_visible_to_anyone() -> None:
    a = access([(1, "world_readable"), (50, "joined")], [])
    assert a.visible(20, MSG, None)
    assert not a.visible(60, MSG, None)
    # The change away from world_readable is visible by the setting before it.
    assert a.visible(50, HISTORY_VISIBILITY, "")
    assert a.earliest_visible() == 1


def test_a_change_to_world_readable_is_visible_by_the_setting_after_it() -> None:
    a = access([(1, "joined"), (50, "world_readable")], [])
    assert a.visible(50, HISTORY_VISIBILITY, "")
    assert not a.visible(40, MSG, None)


def test_someone_elses_membership_event_gets_no_before_or_after_rule() -> None:
    a = access([(1, "joined")], [(10, "join"), (20, "leave")])
    # Its own leave: visible by the membership before it.
    assert a.visible(20, MEMBER, ME)
    assert not a.visible(21, MEMBER, "@other:example.org")


def test_the_default_before_any_setting_is_shared() -> None:
    a = access([(5, "joined")], [(10, "join")])
    assert a.visible(3, MSG, None)
    assert not a.visible(7, MSG, None)
    assert a.earliest_visible() == 0


def test_nothing_visible_to_a_stranger_of_a_joined_room() -> None:
    a = access([(0, "joined")], [])
    assert a.earliest_visible() is None
    assert not a.ever_member()


def test_unsigned_membership_is_after_own_events_before_others() -> None:
    a = access([], [(10, "invite"), (20, "join")])
    assert a.unsigned_membership(20, MEMBER, ME) == "join"
    assert a.unsigned_membership(20, MSG, None) == "invite"
    assert a.unsigned_membership(5, MSG, None) == "leave"
