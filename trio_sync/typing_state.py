"""Who is typing where: in memory only, with its own stream position.

Typing notices are ephemeral, so they are never stored. The typing component of a sync
token is this module's position. A restart starts the counter from the wall clock in
milliseconds, so positions of this process are normally after those of an earlier one: a
client holding an old token is answered at once with the current typing state. A token
ahead of the counter (the clock went back) is answered at once too (see
:meth:`TypingState.is_stale`).

Expiry is driven by :func:`run_typing_expiry`, a task in the service's nursery: when a
user's ``timeout`` runs out, the room's members are woken with the shorter list.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .ingest.user_messages import TypingUpdate

#: Typing with no ``timeout`` (or an absurd one) lasts at most this long (seconds).
MAX_TYPING_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class RoomTyping:
    """One room's typing users, and the position at which that list last changed."""

    position: int
    users: tuple[str, ...]


#: An immutable view of every room's typing state, safe to read from any thread.
TypingView = MappingProxyType[str, RoomTyping]


class TypingState:
    """Typing users per room, their deadlines (Trio clock), and the typing position."""

    def __init__(self, start: int | None = None) -> None:
        self.base = int(time.time() * 1000) if start is None else start
        self.position = self.base
        self._deadlines: dict[str, dict[str, float]] = {}
        self._view: TypingView = MappingProxyType({})
        self._rescheduled = trio.Event()

    @property
    def view(self) -> TypingView:
        """The current state; a new object after every change, never mutated."""
        return self._view

    def is_stale(self, since: int) -> bool:
        """True for a typing position from another process: before this one's start or
        after its current position. Such a token is answered at once with the state."""
        return since < self.base or since > self.position

    def apply(self, updates: Iterable[TypingUpdate], now_ms: int | None = None) -> set[str]:
        """Apply committed typing messages; return the rooms whose typing list changed.

        ``expire_ts`` is wall-clock milliseconds; it becomes a Trio-clock deadline here.
        A renewed timeout of a user already typing changes nothing clients see.
        """
        wall = time.time() * 1000 if now_ms is None else now_ms
        clock = trio.current_time()
        changed: set[str] = set()
        for u in updates:
            if not u.typing:
                if self._deadlines.get(u.room_id, {}).pop(u.user_id, None) is not None:
                    changed.add(u.room_id)
                continue
            ms = MAX_TYPING_SECONDS * 1000 if u.expire_ts is None else u.expire_ts - wall
            seconds = min(ms / 1000, MAX_TYPING_SECONDS)
            if seconds <= 0:
                continue
            room = self._deadlines.setdefault(u.room_id, {})
            if u.user_id not in room:
                changed.add(u.room_id)
            room[u.user_id] = clock + seconds
            self._reschedule()
        self._publish(changed)
        return changed

    def expire(self) -> set[str]:
        """Drop every user whose deadline has passed; return the rooms that changed."""
        now = trio.current_time()
        changed: set[str] = set()
        for room_id, users in self._deadlines.items():
            gone = [u for u, deadline in users.items() if deadline <= now]
            for user_id in gone:
                del users[user_id]
            if gone:
                changed.add(room_id)
        self._publish(changed)
        return changed

    def next_deadline(self) -> float:
        """The earliest deadline of anyone typing (``inf`` when nobody is)."""
        deadlines = (d for users in self._deadlines.values() for d in users.values())
        return min(deadlines, default=float("inf"))

    async def wait_rescheduled(self) -> None:
        """Wait until a new deadline is set (it may be earlier than the one waited for)."""
        await self._rescheduled.wait()

    def _reschedule(self) -> None:
        self._rescheduled.set()
        self._rescheduled = trio.Event()

    def _publish(self, changed: set[str]) -> None:
        if not changed:
            return
        view = dict(self._view)
        for room_id in sorted(changed):
            self.position += 1
            users = self._deadlines.get(room_id) or {}
            view[room_id] = RoomTyping(self.position, tuple(sorted(users)))
            if not users:
                self._deadlines.pop(room_id, None)
        self._view = MappingProxyType(view)


async def run_typing_expiry(
    state: TypingState,
    on_expired: Callable[[set[str]], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Expire typing users at their deadlines and report the rooms; runs until cancelled.

    ``on_expired(rooms)`` is awaited after each expiry (it wakes the rooms' members).
    Cancellation leaves the state consistent: an expiry is applied whole or not at all.
    """
    task_status.started()
    while True:
        with trio.move_on_at(state.next_deadline()):
            await state.wait_rescheduled()
            continue
        rooms = state.expire()
        if rooms:
            await on_expired(rooms)
