"""The notifier: one stream per user, each with a ``trio.Condition``.

It hands out positions, never data. Ingest calls :meth:`Notifier.advance` after each
commit with what the batch changed; only the streams of affected users are woken: the
joined members of rooms with new events, receipts or typing changes; every user whose
membership, invite, account data or unread counts changed; everyone sharing a room with a
user whose presence or device keys changed. To-device messages wake only the target
device: its stream records the device's to-device position, and the user's other devices
re-check and stay parked. A waiter checks its position and parks under the stream's lock,
so a wake-up between "check" and "wait" cannot be lost.

The notifier also owns the in-memory typing state (:mod:`trio_sync.typing_state`), whose
position is the typing component of :attr:`Notifier.current`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import trio

from .ingest.apply import Applied
from .observability.metrics import WAKEUPS
from .tokens import StreamToken
from .typing_state import TypingState

log = logging.getLogger(__name__)


class UserStream:
    """What one user is waiting on: the last token at which something touched them."""

    __slots__ = ("condition", "devices", "idle_since", "last", "waiters")

    def __init__(self, last: StreamToken) -> None:
        self.condition = trio.Condition()
        self.last = last
        #: device_id -> to-device position of the device's newest message.
        self.devices: dict[str, int] = {}
        self.waiters = 0
        self.idle_since = 0.0

    def has_news(self, since: StreamToken, device_id: str | None) -> bool:
        """Whether something touched this user (or this device) after ``since``."""
        if self.last.is_after(since):
            return True
        return device_id is not None and self.devices.get(device_id, 0) > since.to_device


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
        typing: TypingState | None = None,
    ) -> None:
        self.typing = TypingState() if typing is None else typing
        self._current = current.with_stream("typing", self.typing.position)
        self._streams: dict[str, UserStream] = {}
        self._idle_ttl = idle_ttl
        self._next_sweep = 0.0
        self._joined: dict[str, set[str]] = {r: set(us) for r, us in (joined or {}).items()}
        self._rooms_of: dict[str, set[str]] = {}
        # The PDU position of the last membership change of each room and of each user
        # since this process started (earlier ones are unknown here).
        self._started_at = current.pdu
        self._room_members_moved: dict[str, int] = {}
        self._user_moved: dict[str, int] = {}
        for room_id, users in self._joined.items():
            for user_id in users:
                self._rooms_of.setdefault(user_id, set()).add(room_id)
        self._closing = False
        #: Moves whenever some device's one-time-key counts are written (for caches).
        self.key_counts_epoch = 0

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

    def is_joined(self, room_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is currently joined to ``room_id``."""
        return user_id in self._joined.get(room_id, ())

    def rooms_of(self, user_id: str) -> frozenset[str]:
        """The rooms ``user_id`` is currently joined to (as of :attr:`current`)."""
        return frozenset(self._rooms_of.get(user_id, ()))

    def memberships_quiet(self, user_id: str, since: int) -> bool:
        """True when, at PDU positions after ``since``, neither ``user_id``'s memberships
        nor those of any room it is joined to changed (False when that is not known)."""
        if since < self._started_at or self._user_moved.get(user_id, 0) > since:
            return False
        moved = self._room_members_moved
        return all(moved.get(r, 0) <= since for r in self._rooms_of.get(user_id, ()))

    def sharing_a_room(self, user_id: str) -> set[str]:
        """``user_id`` and every user currently joined to a room it is joined to."""
        out = {user_id}
        for room_id in self._rooms_of.get(user_id, ()):
            out |= self._joined.get(room_id, set())
        return out

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

    async def wait_for_update(
        self, user_id: str, since: StreamToken, device_id: str | None = None
    ) -> StreamToken:
        """Wait until something for ``user_id`` (or its device ``device_id``) happened
        after ``since``; return the token.

        Returns at once when the user's stream is already past ``since``, or when
        ``since`` holds a typing position of another process. Always a checkpoint.
        Cancelling it (the ``timeout`` cancel scope, a client disconnect) leaves no state
        behind.
        """
        stream = self._stream(user_id)
        stream.waiters += 1
        stale = self.typing.is_stale(since.typing)
        try:
            async with stream.condition:
                while not (self._closing or stale or stream.has_news(since, device_id)):
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
        if applied.typing:
            applied.ephemeral_rooms |= self.typing.apply(applied.typing)
        if applied.key_counts:
            self.key_counts_epoch += 1
        wake: set[str] = set()
        for room_id in applied.rooms | applied.ephemeral_rooms:
            wake |= self._joined.get(room_id, set())
        for room_id, user_id, membership in applied.memberships:
            self._room_members_moved[room_id] = applied.token.pdu
            self._user_moved[user_id] = applied.token.pdu
            members = self._joined.setdefault(room_id, set())
            wake |= members
            wake.add(user_id)
            if membership == "join":
                members.add(user_id)
                self._rooms_of.setdefault(user_id, set()).add(room_id)
            else:
                members.discard(user_id)
                self._rooms_of.get(user_id, set()).discard(room_id)
        wake |= applied.invited
        wake |= applied.users
        for user_id in applied.shared:
            wake |= self.sharing_a_room(user_id)
        for room_id in applied.purged:
            for user_id in self._joined.pop(room_id, set()):
                self._rooms_of.get(user_id, set()).discard(room_id)
                wake.add(user_id)
        self._current = self._current.union(applied.token).with_stream(
            "typing", self.typing.position
        )
        token = self._current
        woken = []
        for user_id in wake:
            stream = self._streams.get(user_id)
            if stream is not None:
                stream.last = token
                if stream.waiters:
                    woken.append(stream)
        for user_id, device_id in applied.devices:
            stream = self._streams.get(user_id)
            if stream is not None:
                stream.devices[device_id] = token.to_device
                if stream.waiters and user_id not in wake:
                    woken.append(stream)
        if woken:
            WAKEUPS.inc(len(woken))
            log.debug("batch at %s woke %d user stream(s)", token, len(woken))
        for stream in woken:
            async with stream.condition:
                stream.condition.notify_all()
        self._sweep()

    async def typing_expired(self, rooms: set[str]) -> None:
        """Wake the members of ``rooms``, where typing users timed out (the typing
        state has already moved its position)."""
        await self.advance(Applied(ephemeral_rooms=rooms))
