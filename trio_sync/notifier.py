"""The notifier: one stream per user, each with a ``trio.Condition``.

It hands out positions, never data. Ingest calls :meth:`Notifier.advance` after each
commit with what the batch changed; only the streams of affected users are woken (the
joined members of rooms with new events, and every user whose membership or invite
changed). A waiter checks its position and parks under the stream's lock, so a wake-up
between "check" and "wait" cannot be lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import trio

from .ingest.apply import Applied
from .tokens import StreamToken


class UserStream:
    """What one user is waiting on: the last token at which something touched them."""

    __slots__ = ("condition", "idle_since", "last", "waiters")

    def __init__(self, last: StreamToken) -> None:
        self.condition = trio.Condition()
        self.last = last
        self.waiters = 0
        self.idle_since = 0.0


class Notifier:
    """Positions and wake-ups for every user; also the in-memory joined-members map.

    A user's stream is kept while the user keeps syncing; one nobody has waited on for
    ``idle_ttl`` seconds is dropped (a returning user gets a fresh one, whose first wait
    answers at once if anything happened since its token).
    """

    def __init__(
        self,
        current: StreamToken,
        joined: Mapping[str, Iterable[str]] | None = None,
        idle_ttl: float = 600.0,
    ) -> None:
        self._current = current
        self._streams: dict[str, UserStream] = {}
        self._idle_ttl = idle_ttl
        self._next_sweep = 0.0
        self._joined: dict[str, set[str]] = {r: set(us) for r, us in (joined or {}).items()}
        self._closing = False

    @property
    def current(self) -> StreamToken:
        """The newest committed position of every stream."""
        return self._current

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called: waits return at once."""
        return self._closing

    def close(self) -> None:
        """Answer every waiting request now and every later wait at once (shutdown)."""
        self._closing = True
        for stream in self._streams.values():
            # A held lock belongs to an advance() that is about to notify anyway.
            if stream.waiters and not stream.condition.locked():
                stream.condition.acquire_nowait()
                try:
                    stream.condition.notify_all()
                finally:
                    stream.condition.release()

    def joined_members(self, room_id: str) -> frozenset[str]:
        """The users currently joined to ``room_id`` (as of :attr:`current`)."""
        return frozenset(self._joined.get(room_id, ()))

    def waiting(self) -> int:
        """How many requests are parked in :meth:`wait_for_update` right now."""
        return sum(s.waiters for s in self._streams.values())

    def _stream(self, user_id: str) -> UserStream:
        stream = self._streams.get(user_id)
        if stream is None:
            # Nothing is known about what touched this user before now: assume something
            # did, so a waiter with an older token is answered at once, never stranded.
            stream = self._streams[user_id] = UserStream(self._current)
            stream.idle_since = trio.current_time()
        return stream

    async def wait_for_update(self, user_id: str, since: StreamToken) -> StreamToken:
        """Wait until something for ``user_id`` happened after ``since``; return the token.

        Returns at once when the user's stream is already past ``since``. Always a
        checkpoint. Cancelling it (the ``timeout`` cancel scope, a client disconnect)
        leaves no state behind.
        """
        stream = self._stream(user_id)
        stream.waiters += 1
        try:
            async with stream.condition:
                while not (self._closing or stream.last.is_after(since)):
                    await stream.condition.wait()
        finally:
            stream.waiters -= 1
            stream.idle_since = trio.current_time()
        return self._current

    def streams(self) -> int:
        """How many users' streams are kept."""
        return len(self._streams)

    def _sweep(self) -> None:
        now = trio.current_time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._idle_ttl / 4
        cutoff = now - self._idle_ttl
        idle = [u for u, s in self._streams.items() if not s.waiters and s.idle_since < cutoff]
        for user_id in idle:
            del self._streams[user_id]

    async def advance(self, applied: Applied) -> None:
        """Record a committed batch and wake the users it affects.

        A checkpoint per woken user (the conditions' locks). Cancellation after the
        position moved but before every user was woken leaves later waiters correct:
        they compare against the moved position when they next check.
        """
        wake: set[str] = set()
        for room_id in applied.rooms:
            wake |= self._joined.get(room_id, set())
        for room_id, user_id, membership in applied.memberships:
            members = self._joined.setdefault(room_id, set())
            wake |= members
            wake.add(user_id)
            if membership == "join":
                members.add(user_id)
            else:
                members.discard(user_id)
        wake |= applied.invited
        for room_id in applied.purged:
            wake |= self._joined.pop(room_id, set())
        self._current = self._current.union(applied.token)
        token = self._current
        woken = []
        for user_id in wake:
            stream = self._streams.get(user_id)
            if stream is not None:
                stream.last = token
                if stream.waiters:
                    woken.append(stream)
        for stream in woken:
            async with stream.condition:
                stream.condition.notify_all()
        self._sweep()
