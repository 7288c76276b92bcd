"""History visibility (spec: *Room History Visibility*, server behaviour), from room state.

Whether a user may see an event depends on the room's state *at that event*: the
``m.room.history_visibility`` setting and the user's membership just before it. Both are
kept in ``room_state`` as validity intervals, so everything needed to judge any event of a
room for one user is a handful of rows: the room's visibility intervals and the user's
membership intervals. :func:`load_access` reads them for many rooms in one query.

The rules, for an event at position ``p``:

1. visibility ``world_readable`` → allowed;
2. the user's membership was ``join`` → allowed;
3. visibility ``shared`` and the user joined at some position after ``p`` → allowed;
4. membership ``invite`` and visibility ``invited`` → allowed;
5. otherwise denied.

A user never joined to the room sees only ``world_readable`` history, and none unless the
room is ``world_readable`` at the snapshot (:meth:`RoomAccess.may_read`, the room read rule
of :mod:`trio_sync.reads.access`).

For an ``m.room.history_visibility`` event the setting before *or* after it may allow it;
for the user's own membership event, the membership before *or* after it may. A missing
or unknown setting counts as ``shared``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson

from .engine import FOREVER, Array, Conn

MEMBER = "m.room.member"
HISTORY_VISIBILITY = "m.room.history_visibility"
SETTINGS = ("world_readable", "shared", "invited", "joined")
#: Settings under which a user who is joined now sees every earlier event.
_OPEN = ("world_readable", "shared")


def setting_of(content: object) -> str:
    """The visibility a ``m.room.history_visibility`` content sets (``shared`` if unknown)."""
    value = content.get("history_visibility") if isinstance(content, dict) else None
    return value if value in SETTINGS else "shared"


@dataclass(slots=True)
class _Intervals:
    """Values valid over ``[start, end)`` position intervals, sorted and non-overlapping."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def add(self, start: int, end: int, value: str) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.values.append(value)

    def sort(self) -> None:
        order = sorted(range(len(self.starts)), key=self.starts.__getitem__)
        self.starts = [self.starts[i] for i in order]
        self.ends = [self.ends[i] for i in order]
        self.values = [self.values[i] for i in order]

    def at(self, pos: int) -> str | None:
        """The value in force at ``pos`` (``start <= pos < end``), or None."""
        i = bisect_right(self.starts, pos) - 1
        if i >= 0 and pos < self.ends[i]:
            return self.values[i]
        return None


@dataclass(slots=True)
class RoomAccess:
    """One user's view of one room's history: what it may see and its membership over time."""

    user_id: str
    visibility: _Intervals = field(default_factory=_Intervals)
    membership: _Intervals = field(default_factory=_Intervals)
    #: Events of forked histories whose own state differs from the linear state before
    #: their position (``event_state_before``): position → setting / membership at them.
    setting_at_event: dict[int, str] = field(default_factory=dict)
    membership_at_event: dict[int, str] = field(default_factory=dict)

    def _setting_before(self, pos: int) -> str:
        found = self.setting_at_event.get(pos)
        return found if found is not None else self.setting_at(pos - 1)

    def _membership_before(self, pos: int) -> str:
        found = self.membership_at_event.get(pos)
        return found if found is not None else self.membership_at(pos - 1)

    #: The user was never joined: it sees only what anyone sees (``world_readable``
    #: history), whatever an invite or knock would otherwise allow.
    outsider: bool = False
    #: The user may read the room at all (:meth:`may_read` at the snapshot): a user never
    #: joined to a room that is not ``world_readable`` sees none of its history.
    readable: bool = True

    @classmethod
    def joined_from(cls, user_id: str, since: int) -> RoomAccess:
        """The access of a user joined from ``since`` on, for judging events after
        ``since`` only (each is visible by rule 2; no query needed)."""
        access = cls(user_id)
        access.membership.add(since, FOREVER, "join")
        return access

    def linear(self) -> RoomAccess:
        """This access without the own state of forked events: for judging an event whose
        own state is unknown at a position whose event has one (a backfilled event at its
        anchor), by the linear state there, as :meth:`visible_just_before` does."""
        return replace(self, setting_at_event={}, membership_at_event={})

    def setting_at(self, pos: int) -> str:
        """The visibility setting in force at ``pos`` (after the event there)."""
        return self.visibility.at(pos) or "shared"

    def membership_at(self, pos: int) -> str:
        """The user's membership after the event at ``pos`` (``leave`` if it has none)."""
        return self.membership.at(pos) or "leave"

    def joined_after(self, pos: int) -> bool:
        """Whether the user is joined at some position after ``pos``: a join that starts
        later, or one in force then. The two differ only for an event of a forked history
        whose own state says the user was not joined though the linear one did (it
        joined, on the other branch, before the event's position): it is joined after
        the event, so ``shared`` shows it the event."""
        m = self.membership
        return any(v == "join" and end > pos + 1 for v, end in zip(m.values, m.ends, strict=True))

    def everything_visible(self, after: int, upto: int) -> bool:
        """True when every event at ``after < p <= upto`` is visible without looking closer.

        That holds when the user's membership at ``upto`` is ``join`` and the setting was
        ``shared`` or ``world_readable`` throughout: each event is then visible by rule 2
        or rule 3.
        """
        if self.membership_at(upto) != "join":
            return False
        forked = (*self.setting_at_event, *self.membership_at_event)
        if any(after < p <= upto for p in forked):
            return False
        v = self.visibility
        for start, end, value in zip(v.starts, v.ends, v.values, strict=True):
            if end > after and start <= upto and value not in _OPEN:
                return False
        # Before the first setting the default (shared) holds.
        return True

    def earliest_visible(self) -> int | None:
        """A position before which the user can see no event (None: it sees nothing).

        Each event is judged by the setting and membership in force just before it, or
        (for settings and the user's own membership events) just after it; so an event
        can only be visible from the start of an interval that could allow it.
        """
        if not self.readable:
            return None
        v, m = self.visibility, self.membership
        candidates = [
            s for s, val in zip(m.starts, m.values, strict=True) if val in ("join", "invite")
        ]
        candidates += [
            s
            for s, val in zip(v.starts, v.values, strict=True)
            if val == "world_readable" or (val == "shared" and self.joined_after(s))
        ]
        # Before the first setting the default, shared, holds.
        if (not v.starts or v.starts[0] > 0) and self.joined_after(0):
            candidates.append(0)
        # An event of a forked history is judged by its own state.
        candidates += [*self.setting_at_event, *self.membership_at_event]
        return min(candidates) if candidates else None

    def left_at(self) -> int | None:
        """Where the user's latest leave (or ban) took effect, if it has one."""
        m = self.membership
        ends = [s for s, v in zip(m.starts, m.values, strict=True) if v in ("leave", "ban")]
        return max(ends) if ends else None

    def ever_member(self) -> bool:
        """Whether the user has had any membership of the room (up to the snapshot)."""
        return bool(self.membership.starts)

    def ever_joined(self) -> bool:
        """Whether the user has been joined to the room at some point (up to the snapshot)."""
        return "join" in self.membership.values

    def may_read(self, at: int) -> bool:
        """The room read rule: the user is joined, or was joined before, or the room is
        ``world_readable`` at ``at``. Every read endpoint answers 403 when it fails, and
        ``/sync`` shows no earlier event of such a room (so ``limited`` there is true
        exactly when paginating from ``prev_batch`` would return an event)."""
        return self.ever_joined() or self.setting_at(at) == "world_readable"

    def _allows(self, setting: str, membership: str, pos: int) -> bool:
        if not self.readable:
            return False
        if setting == "world_readable":
            return True
        if self.outsider:
            return False
        if membership == "join":
            return True
        if setting == "shared" and self.joined_after(pos):
            return True
        return membership == "invite" and setting == "invited"

    def visible(self, pos: int, etype: str, state_key: str | None) -> bool:
        """Whether the user may see the event at ``pos`` (of type ``etype``)."""
        setting = self._setting_before(pos)
        membership = self._membership_before(pos)
        if self._allows(setting, membership, pos):
            return True
        is_setting = etype == HISTORY_VISIBILITY and state_key == ""
        if is_setting and self._allows(self.setting_at(pos), membership, pos):
            return True
        if etype == MEMBER and state_key == self.user_id:
            return self._allows(setting, self.membership_at(pos), pos)
        return False

    def visible_just_before(self, pos: int) -> bool:
        """Whether the user may see an event placed just before the event at ``pos`` whose
        own state is unknown (a backfilled one): judged by the state before ``pos``, a join
        at ``pos`` counting as a later one."""
        return self._allows(self.setting_at(pos - 1), self.membership_at(pos - 1), pos - 1)

    def unsigned_membership(self, pos: int, etype: str, state_key: str | None) -> str:
        """The user's membership at the event, for ``unsigned.membership``: after its own
        membership events, before anything else."""
        if etype == MEMBER and state_key == self.user_id:
            return self.membership_at(pos)
        return self._membership_before(pos)


async def load_access(
    conn: Conn, user_id: str, room_ids: Iterable[str], upto: int
) -> dict[str, RoomAccess]:
    """The :class:`RoomAccess` of ``user_id`` for each of ``room_ids``, as of ``upto``,
    with the room read rule (:meth:`RoomAccess.may_read` at ``upto``) applied: a room the
    user may not read shows it no event.

    One query. Intervals that start after ``upto`` are ignored and those still open at
    ``upto`` are treated as open for ever, so the answer is that of the snapshot at
    ``upto`` even when later events are already stored.
    """
    rooms = list(room_ids)
    out = {r: RoomAccess(user_id) for r in rooms}
    if not rooms:
        return out
    rows = await conn.fetch(
        "SELECT s.room_id, s.type, s.membership, s.added_at, s.removed_at, "
        f"CASE WHEN s.type = $2 THEN e.client_json END FROM {_of_rooms(conn, 'room_state s')} "
        "LEFT JOIN events e ON e.event_id = s.event_id AND s.type = $2 "
        "WHERE s.added_at <= $5 AND ((s.type = $2 AND s.state_key = '') "
        "OR (s.type = $3 AND s.state_key = $4)) "
        "UNION ALL SELECT b.room_id, b.type, b.membership, b.pos, -1, "
        "CASE WHEN b.type = $2 THEN e.client_json END "
        f"FROM {_of_rooms(conn, 'event_state_before b')} "
        "LEFT JOIN events e ON e.event_id = b.event_id AND b.type = $2 "
        "WHERE b.pos <= $5 AND ((b.type = $2 AND b.state_key = '') "
        "OR (b.type = $3 AND b.state_key = $4))",
        Array(rooms),
        HISTORY_VISIBILITY,
        MEMBER,
        user_id,
        upto,
    )
    for row in rows:
        etype, membership, added, removed, content_json = (row[i] for i in range(1, 6))
        access = out[row[0]]
        if removed == -1:  # the state at an event of a forked history
            if etype == MEMBER:
                access.membership_at_event[added] = membership or "leave"
            else:
                content = orjson.loads(content_json).get("content") if content_json else None
                access.setting_at_event[added] = setting_of(content)
            continue
        end = FOREVER if removed > upto else removed
        if etype == MEMBER:
            access.membership.add(added, end, membership or "leave")
        else:
            content = orjson.loads(content_json).get("content") if content_json else None
            access.visibility.add(added, end, setting_of(content))
    for access in out.values():
        access.membership.sort()
        access.visibility.sort()
        access.outsider = not access.ever_joined()
        access.readable = access.may_read(upto)
    return out


def _of_rooms(conn: Conn, table: str) -> str:
    """``table`` (``name alias``) limited to the rooms of the array ``$1``, as a FROM item.

    SQLite reads the rooms first and each room's rows through the table's room index: a
    CROSS JOIN fixes that order. Left to its planner, which has no statistics, it finds
    the rows of the room-wide state (``state_key`` empty) through the ``state_key`` index,
    walking that of every room of the database."""
    name, alias = table.split()
    if conn.dialect == "sqlite":
        return f"json_each($1) AS r CROSS JOIN {name} {alias} ON {alias}.room_id = r.value"
    return f"{name} {alias} JOIN unnest($1::text[]) AS r(room_id) ON {alias}.room_id = r.room_id"


async def rooms_with_forks(conn: Conn, room_ids: Iterable[str], after: int, upto: int) -> set[str]:
    """Which of ``room_ids`` have an event of a forked history (judged by its own state)
    at ``after < p <= upto``."""
    rows = await conn.fetch(
        "SELECT DISTINCT room_id FROM event_state_before WHERE room_id = ANY($1) "
        "AND pos > $2 AND pos <= $3",
        Array(list(room_ids)),
        after,
        upto,
    )
    return {r[0] for r in rows}
