"""How a room's ``required_state`` changes between requests of one connection.

For every room it has sent, a connection remembers an *effective* config: the
``(type, state_key)`` pairs whose current values the client holds (``$ME`` already
resolved). A request's config ``R`` is compared with it each time the room is sent:

* State that changed since the room was last sent is sent when ``R`` asks for it (or it
  is the membership of a lazy-loaded member, see below).
* Pairs ``R`` adds that the effective config does not cover are read whole from the
  room's current state and sent, without resending what the client already holds.
* Pairs ``R`` drops shrink the effective config lazily: a dropped explicit pair stays
  remembered until its state changes while it is not asked for, so dropping and
  re-adding an unchanged entry sends nothing, and re-adding a changed one sends its
  current value. Dropped wildcards are forgotten at once (re-adding one sends what it
  matches again). At most :data:`MAX_REMEMBERED` dropped keys are kept per type.
* ``$LAZY`` members are sent once per connection: the users whose member events the
  client holds are remembered, and forgotten when their membership changes while it is
  not sent. At most :data:`MAX_REMEMBERED` are remembered per room: those this response
  needs, then the others most recently needed first; a member left out is read and sent
  again the next time the timeline needs it (Synapse's bound,
  ``MAX_NUMBER_PREVIOUS_STATE_KEYS_TO_REMEMBER``, which fills the rest arbitrarily).

Everything here is pure: the callers read state and store the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..storage import rooms as q
from .request import LAZY, WILDCARD, RequiredState

#: The most dropped-but-unchanged state keys remembered per event type and room, and the
#: most ``$LAZY`` members remembered per room.
MAX_REMEMBERED = 100


def covers(have: RequiredState, pair: tuple[str, str]) -> bool:
    """Whether every entry ``pair`` asks for is asked for by ``have`` too."""
    t, k = pair
    pairs = have.pairs
    if (WILDCARD, WILDCARD) in pairs:
        return True
    if t == WILDCARD:
        return k != WILDCARD and (WILDCARD, k) in pairs
    if k == WILDCARD:
        return (t, WILDCARD) in pairs
    return have.matches(t, k)


def newly_required(had: RequiredState, want: RequiredState) -> RequiredState:
    """The pairs of ``want`` that ``had`` does not cover (``$LAZY`` left out)."""
    return RequiredState(frozenset(p for p in want.pairs if p[1] != LAZY and not covers(had, p)))


@dataclass(frozen=True, slots=True)
class StateUpdate:
    """What to send of a room's state, and what the connection holds afterwards."""

    #: Changed entries to send (from the delta).
    changed: list[q.StateEvent]
    #: Pairs to read whole from the current state (entries ``had`` matches left out).
    read: RequiredState
    #: Lazy members to read whole from the current state.
    read_members: list[str]
    #: The users whose member events the client holds for ``$LAZY`` after this, most
    #: recently needed first (at most :data:`MAX_REMEMBERED`).
    lazy_members: tuple[str, ...]
    #: The effective config after this.
    effective: RequiredState


def plan_update(
    had: RequiredState,
    known_lazy: Sequence[str],
    want: RequiredState,
    delta: Sequence[q.StateEvent],
    lazy_users: Sequence[str],
) -> StateUpdate:
    """Compare the effective config ``had`` (and the lazy members ``known_lazy``) with
    the request's resolved config ``want``, given the state ``delta`` since the room was
    last sent and the ``lazy_users`` this response's timeline needs (its senders, oldest
    first, then the user). ``known_lazy`` is ordered as :attr:`StateUpdate.lazy_members`."""
    lazy_now = set(lazy_users)
    changed = [
        s
        for s in delta
        if want.matches(s.type, s.state_key)
        or (
            s.type == q.MEMBER
            and (s.state_key in lazy_now or (want.lazy and s.state_key in known_lazy))
        )
    ]
    sent_keys = {(s.type, s.state_key) for s in changed}
    unsent = {(s.type, s.state_key) for s in delta} - sent_keys
    # The lazy members the client holds: those it held whose membership did not change
    # unseen, plus those it holds through an explicit pair of ``had``.
    held = [u for u in known_lazy if (q.MEMBER, u) not in unsent]
    held_set = set(held)
    read_members = [
        u
        for u in lazy_users
        if u not in held_set
        and (q.MEMBER, u) not in sent_keys
        and (not had.matches(q.MEMBER, u) or (q.MEMBER, u) in unsent)
    ]
    lazy_after = remember_lazy(lazy_users, held)
    return StateUpdate(
        changed,
        newly_required(had, want),
        read_members,
        lazy_after,
        _effective(had, want, unsent),
    )


def remember_lazy(now: Sequence[str], held: Sequence[str]) -> tuple[str, ...]:
    """The ``$LAZY`` members to remember: ``now`` (a response's lazy users, senders oldest
    first and the user last) with the user and the newest senders first, then ``held``
    (most recently needed first), without repeats; at most :data:`MAX_REMEMBERED`."""
    return tuple(dict.fromkeys([*reversed(now), *held]))[:MAX_REMEMBERED]


def _effective(
    had: RequiredState, want: RequiredState, unsent: set[tuple[str, str]]
) -> RequiredState:
    """``want`` plus the explicit pairs of ``had`` it dropped whose state did not change
    unseen (at most :data:`MAX_REMEMBERED` per type)."""
    kept: dict[str, list[tuple[str, str]]] = {}
    for pair in sorted(had.pairs - want.pairs):
        t, k = pair
        if WILDCARD in pair or k == LAZY or pair in unsent:
            continue
        kept.setdefault(t, []).append(pair)
    extra = frozenset(p for pairs in kept.values() for p in pairs[:MAX_REMEMBERED])
    return RequiredState(want.pairs | extra)
