"""The notifier: one stream per user, with the cancel scopes of the requests parked on it.

It hands out positions, never data. Ingest calls :meth:`Notifier.advance` after each
commit with what the batch changed; only the streams of affected users are woken: the
joined members of rooms with new events, receipts or typing changes; every user whose
membership, invite, account data or unread counts changed; everyone sharing a room with a
user whose presence or device keys changed. To-device messages wake only the target
device: its stream records the device's to-device position, and the user's other devices
re-check and stay parked. A request parks by registering a cancel scope (see
:meth:`Notifier.park`), which checks its position in the same step (no checkpoint in
between), so a wake-up between "check" and "wait" cannot be lost; waking cancels the
scopes, so a parked request costs no task, lock or condition of its own.

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
    """What one user is waiting on: the last token at which something touched them, and
    the cancel scopes of the requests parked on it (each with its ``since`` and device)."""

    __slots__ = ("devices", "idle_since", "last", "parked")

    def __init__(self, last: StreamToken) -> None:
        self.last = last
        #: device_id -> to-device position of the device's newest message.
        self.devices: dict[str, int] = {}
        self.parked: dict[trio.CancelScope, tuple[StreamToken, str | None]] = {}
        self.idle_since = 0.0

    def has_news(self, since: StreamToken, device_id: str | None) -> bool:
        """Whether something touched this user (or this device) after ``since``."""
        if self.last.is_after(since):
            return True
        return device_id is not None and self.devices.get(device_id, 0) > since.to_device

    def wake(self, everyone: bool = False) -> None:
        """Cancel the scope of every parked request that now has news (or all)."""
        for scope, (since, device_id) in self.parked.items():
            if everyone or self.has_news(since, device_id):
                scope.cancel()


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
            stream.wake(everyone=True)

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
        return sum(len(s.parked) for s in self._streams.values())

    def _stream(self, user_id: str) -> UserStream:
        stream = self._streams.get(user_id)
        if stream is None:
            # Nothing is known about what touched this user before now: assume something
            # did, so a waiter with an older token is answered at once, never stranded.
            stream = self._streams[user_id] = UserStream(self._current)
            stream.idle_since = trio.current_time()
        return stream

    def has_news(self, user_id: str, since: StreamToken, device_id: str | None = None) -> bool:
        """Whether :meth:`wait_for_update` would return at once: something for ``user_id``
        (or its device ``device_id``) happened after ``since``, ``since`` holds a typing
        position of another process, or the notifier is closing. Keeps (or starts) the
        user's stream, so that its next request can tell. Never a checkpoint."""
        if self._closing or self.typing.is_stale(since.typing):
            return True
        return self._stream(user_id).has_news(since, device_id)

    def park(
        self,
        user_id: str,
        since: StreamToken,
        device_id: str | None,
        scope: trio.CancelScope,
    ) -> None:
        """Until :meth:`unpark`, cancel ``scope`` as soon as something for ``user_id`` (or
        its device ``device_id``) happens after ``since`` (at once if it already has, if
        ``since`` holds a typing position of another process, or on shutdown).

        This is how a request parks without a task or lock of its own: it awaits anything
        (its client's next message, or ``trio.sleep_forever``) inside ``scope``, and calls
        :meth:`unpark` in a ``finally`` (a ``try`` costs a parked poll nothing; a context
        manager's object and bound ``__exit__`` would). Never a checkpoint.
        """
        stream = self._stream(user_id)
        stream.parked[scope] = (since, device_id)
        if self._closing or self.typing.is_stale(since.typing) or stream.has_news(since, device_id):
            scope.cancel()

    def unpark(self, user_id: str, scope: trio.CancelScope) -> None:
        """Forget ``scope``, parked by :meth:`park`: nothing of it is left behind. Never a
        checkpoint."""
        # A stream is only dropped once nothing is parked on it (see _sweep).
        stream = self._streams[user_id]
        del stream.parked[scope]
        stream.idle_since = trio.current_time()

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
        with trio.CancelScope() as scope:
            self.park(user_id, since, device_id, scope)
            try:
                await trio.sleep_forever()
            finally:
                self.unpark(user_id, scope)
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
        idle = [u for u, s in self._streams.items() if not s.parked and s.idle_since < cutoff]
        for user_id in idle:
            del self._streams[user_id]

    async def advance(self, applied: Applied) -> None:
        """Record a committed batch and wake the users it affects.

        Wakes by cancelling parked requests' scopes: no checkpoint, so it cannot be
        cancelled half way.
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
                if stream.parked:
                    woken.append(stream)
        for user_id, device_id in applied.devices:
            stream = self._streams.get(user_id)
            if stream is not None:
                stream.devices[device_id] = token.to_device
                if stream.parked and user_id not in wake:
                    woken.append(stream)
        if woken:
            WAKEUPS.inc(len(woken))
            log.debug("batch at %s woke %d user stream(s)", token, len(woken))
        for stream in woken:
            stream.wake()
        self._sweep()

    async def typing_expired(self, rooms: set[str]) -> None:
        """Wake the members of ``rooms``, where typing users timed out (the typing
        state has already moved its position)."""
        await self.advance(Applied(ephemeral_rooms=rooms))
