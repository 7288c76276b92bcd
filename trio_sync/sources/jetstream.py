"""The JetStream source: a homeserver's (Dendrite's) NATS JetStream output streams.

One :class:`StreamSource` per stream of :data:`.dendrite_wire.STREAMS`, each a durable
pull consumer of trio-sync's own named ``<prefix>TrioSync<Name>`` (never one of
Dendrite's, so Dendrite's sync API keeps its own). Each stream's last applied sequence is
committed under ``jetstream:<stream>`` in the same transaction as what it changed, and
its messages are acknowledged only after that COMMIT: a message delivered again (a crash
before the ack, a lost ack) is at or below the committed sequence and is skipped.

nats-py is an asyncio library: it runs on the process's one trio-asyncio loop
(:mod:`trio_sync.bridge`), each fetch and each batch's acks crossing once. When NATS is
unreachable or restarts, the client reconnects by itself and every stream re-checks its
stream and consumer (recreating a memory stream that a restart lost) with backoff, then
resumes from its durable; ``/sync`` keeps answering from what is stored meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
import orjson
import trio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from ..bridge import run_asyncio
from ..ingest.apply import Item
from ..ingest.bad_message import BadMessage
from ..ingest.messages import parse_message
from ..ingest.runner import Ingestor, parse_items
from ..observability.metrics import report_lag
from . import dendrite_wire as wire
from .base import Batch, Position, run_source

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "Dendrite"


class DeliveryGap(Exception):
    """Messages were handed out to us but never arrived (lost in a reconnection)."""


#: Errors that mean "NATS is not reachable or not ready": retried with backoff.
NATS_ERRORS: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    asyncio.TimeoutError,
    OSError,
    DeliveryGap,
)


@dataclass(frozen=True, slots=True)
class Received:
    """One message as fetched: its stream sequence, headers and body."""

    seq: int
    headers: dict[str, str]
    data: bytes


#: Turns one stream's fetched messages into ingest items (positions = sequences).
Translate = Callable[[str, Sequence[Received]], Awaitable[list[Item]]]


def stream_name(prefix: str, name: str) -> str:
    return prefix + name


def consumer_name(prefix: str, name: str) -> str:
    """trio-sync's durable on stream ``<prefix><name>``: ``<prefix>TrioSync<name>``."""
    return f"{prefix}TrioSync{name}"


def source_name(stream: str) -> str:
    """The key a stream's applied sequence is committed under."""
    return "jetstream:" + stream


def stream_config(prefix: str, settings: wire.StreamSettings) -> StreamConfig:
    """The stream as Dendrite creates it: subjects ``[name, name.>]``, interest retention."""
    name = stream_name(prefix, settings.name)
    return StreamConfig(
        name=name,
        subjects=[name, name + ".>"],
        retention=RetentionPolicy.INTEREST,
        storage=StorageType.MEMORY if settings.memory else StorageType.FILE,
        max_age=settings.max_age or None,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> tuple[int, datetime | None]:
    """Create the stream unless it exists (an existing one is left as its owner made it);
    its last sequence and creation time."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            info = await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # Created concurrently (by Dendrite, or another stream task): fine if it exists.
            info = await js.stream_info(config.name)
    return int(info.state.last_seq or 0), info.created


def stream_epoch(created: datetime | None) -> str | None:
    """A stream's epoch (:class:`~trio_sync.sources.base.Position`): its creation time,
    as NATS reports it (``StreamInfo.created``), to the microsecond."""
    return None if created is None else created.isoformat()


class Puller:
    """Runs in asyncio: a pull consumer's messages, as soon as they arrive.

    One pull request for ``batch`` messages (expiring after ``idle`` seconds) is kept
    outstanding on an inbox of our own; :meth:`fetch` returns whatever has arrived, or
    waits for the first message. A new request is sent once the last one is used up or
    ended (NATS answers an expired request with status 408), so a message published while
    we wait reaches us at once, and a busy stream streams in batches.
    """

    def __init__(self, nc: NATS, stream: str, durable: str, batch: int, idle: float) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._batch = batch
        self._idle = idle
        self._inbox = nc.new_inbox()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None
        self._outstanding = 0
        self._requested_at = 0.0

    async def open(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def _request(self) -> None:
        body = {"batch": self._batch, "expires": int(self._idle * 1e9)}
        self._outstanding = self._batch
        self._requested_at = time.monotonic()
        await self._nc.publish(self._subject, orjson.dumps(body), reply=self._inbox)

    def _take(self, msg: Msg, into: list[Msg]) -> None:
        status = (msg.headers or {}).get("Status")
        if status is None:
            into.append(msg)
            self._outstanding -= 1
        elif status != "100":  # 404/408/409: this request is over (100 is a heartbeat)
            self._outstanding = 0

    async def fetch(self) -> list[Msg]:
        """What has arrived (at most ``batch``), waiting up to ``idle`` for the first."""
        if self._outstanding <= 0 or time.monotonic() > self._requested_at + self._idle + 1:
            # Used up, ended, or lost (a reconnection drops pending requests).
            await self._request()
        msgs: list[Msg] = []
        try:
            self._take(await asyncio.wait_for(self._queue.get(), self._idle), msgs)
        except TimeoutError:
            return msgs
        while not self._queue.empty() and len(msgs) < self._batch:
            self._take(self._queue.get_nowait(), msgs)
        if self._outstanding <= 0:
            await self._request()
        return msgs

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()


class StreamSource:
    """One output stream as a :class:`~trio_sync.sources.base.Source`."""

    def __init__(
        self,
        nc: NATS,
        prefix: str,
        settings: wire.StreamSettings,
        translate: Translate,
        *,
        batch_size: int = 500,
        idle_timeout: float = 5.0,
        max_backoff: float = 10.0,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._settings = settings
        self.stream = stream_name(prefix, settings.name)
        self.durable = consumer_name(prefix, settings.name)
        self.name = source_name(self.stream)
        self._translate = translate
        self._batch_size = batch_size
        self._idle_timeout = idle_timeout
        self._max_backoff = max_backoff
        self._config = stream_config(prefix, settings)
        self._acked = 0
        #: When the stream we consume was created (:func:`stream_epoch`), committed with
        #: the sequence: a stream created at another time is another stream.
        self._epoch: str | None = None
        #: Holds the stream's interest while our durable is being repositioned.
        self._spare = self.durable + "Spare"

    async def _subscribe(self, after: int) -> tuple[Puller, int, int]:
        """Runs in asyncio: the stream and our durable exist (created if missing, the
        durable starting after ``after``); a pull subscription bound to it, and the
        position to resume after (0 when the stream is not the one ``after`` counts in:
        created at another time than the committed epoch, or ending before ``after``,
        as when a NATS restart lost a memory stream, whether we were running or not)."""
        last, created = await ensure_stream(self._js, self._config)
        epoch = stream_epoch(created)
        renewed = None not in (epoch, self._epoch) and epoch != self._epoch
        self._epoch = epoch or self._epoch
        if after > 0 and (renewed or last < after):
            log.warning(
                "JetStream stream %s was created anew (it ends at %d, we applied up to %d);"
                " consuming it from its start",
                self.stream,
                last,
                after,
            )
            after = 0
        delivered = 0
        try:
            info = await self._js.consumer_info(self.stream, self.durable)
        except nats.js.errors.NotFoundError:
            await self._create(self.durable, after)
        else:
            if int(info.delivered.stream_seq or 0) > after:
                await self._reposition(after)
            else:
                delivered = int(info.delivered.consumer_seq or 0)
        await _delete_consumer(self._js, self.stream, self._spare)
        sub = Puller(self._nc, self.stream, self.durable, self._batch_size, self._idle_timeout)
        await sub.open()
        return sub, after, delivered

    async def _create(self, durable: str, after: int) -> None:
        """Runs in asyncio: a durable pull consumer delivering from ``after + 1``."""
        start: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
        if after > 0:
            start = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1}
        await self._js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60.0,
                max_ack_pending=4 * self._batch_size,
                **start,
            ),
        )

    async def _reposition(self, after: int) -> None:
        """Runs in asyncio: our durable has handed out messages beyond ``after`` that
        were never committed (the process died, or they were lost in transit); NATS would
        deliver them again only after the ack wait, out of order. So it is created anew
        at ``after + 1``, a spare durable holding the stream's interest meanwhile so that
        no message is dropped between the two."""
        log.info("JetStream stream %s: resuming our durable after %d", self.stream, after)
        await _delete_consumer(self._js, self.stream, self._spare)
        await self._create(self._spare, after)
        await _delete_consumer(self._js, self.stream, self.durable)
        await self._create(self.durable, after)

    async def _fetch(self, sub: Puller) -> list[Msg]:
        """Runs in asyncio: the next messages, or [] after ``idle_timeout`` without any
        (then the consumer is checked to still exist, as a restart may have lost it)."""
        msgs = await sub.fetch()
        if not msgs:
            info = await self._js.consumer_info(self.stream, self.durable)
            report_lag(self.name, int(info.num_pending or 0))
        return msgs

    async def batches(self, committed: Position) -> AsyncGenerator[Batch, None]:
        """The stream's messages after sequence ``committed.offset``, a fetch at a time,
        forever; from the stream's start when it is no longer the stream of
        ``committed.epoch``.

        NATS errors are logged and retried with backoff (0.1 s doubling up to
        ``max_backoff``), resubscribing from the durable. Cancellation loses nothing.
        """
        self._acked = committed.offset
        self._epoch = committed.epoch
        delay = 0.1
        while True:
            sub = None
            try:
                sub, after, delivered = await run_asyncio(self._subscribe, self._acked)
                restart = after if after < self._acked else None
                self._acked = after
                if delay > 0.1:
                    log.info("JetStream stream %s: consuming again", self.stream)
                delay = 0.1
                while True:
                    msgs = await run_asyncio(self._fetch, sub)
                    if not msgs:
                        continue
                    delivered = _check_contiguous(msgs, delivered)
                    received = [_received(m) for m in msgs]
                    items = await self._translate(self.stream, received)
                    yield Batch(items, received[-1].seq, msgs, restart, self._epoch)
                    restart = None
            except NATS_ERRORS as exc:
                log.warning(
                    "JetStream stream %s: %s; retrying in %.1fs",
                    self.stream,
                    _describe(exc),
                    delay,
                )
            finally:
                if sub is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await _quietly(run_asyncio(sub.close))
            await trio.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def ack(self, batch: Batch) -> None:
        """Acknowledge the batch's messages (its sequences are committed)."""
        self._acked = max(self._acked, batch.end)
        msgs: list[Msg] = batch.token  # type: ignore[assignment]
        if msgs:
            # Messages of the stream after the batch's last, not yet delivered to us.
            report_lag(self.name, int(msgs[-1].metadata.num_pending or 0))
        await _quietly(run_asyncio(_ack_all, msgs))


async def _delete_consumer(js: JetStreamContext, stream: str, name: str) -> None:
    """Runs in asyncio: delete consumer ``name`` if it exists."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(stream, name)


def _check_contiguous(msgs: Sequence[Msg], delivered: int) -> int:
    """The consumer's delivery sequence after ``msgs``, which must follow ``delivered``
    without a gap: NATS would hand the missing ones out again only after the ack wait,
    behind later ones, and a later sequence committed first would hide them. A gap
    raises :class:`DeliveryGap`: the durable is then repositioned after what is committed.
    """
    for msg in msgs:
        seq = msg.metadata.sequence.consumer
        if seq != delivered + 1:
            raise DeliveryGap(f"delivery {seq} follows {delivered}")
        delivered = seq
    return delivered


def _received(msg: Msg) -> Received:
    return Received(msg.metadata.sequence.stream, dict(msg.headers or {}), msg.data)


async def _ack_all(msgs: Sequence[Msg]) -> None:
    for msg in msgs:
        await msg.ack()


async def _quietly(call: Awaitable[object]) -> None:
    """Await ``call``; a NATS error is only logged (an unacknowledged message comes again
    and is skipped as applied)."""
    try:
        await call
    except NATS_ERRORS as exc:
        log.debug("JetStream: %s (ignored)", _describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Translator:
    """Turns fetched messages of any stream into ingest items, stream by stream.

    ``lookup_content(user_id, room_id, type)`` supplies account data content the
    ``OutputClientData`` messages do not carry; ``complete_state(messages)`` may add the
    bodies of state events that room events name only by ID. Without them, account data
    whose content is not in the message and state naming events never sent are rejected.
    """

    def __init__(
        self,
        prefix: str,
        lookup_content: Callable[[str, str, str], Awaitable[object]] | None = None,
        complete_state: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
    ) -> None:
        self._kinds = {stream_name(prefix, s.name): s.name for s in wire.STREAMS}
        self._lookup_content = lookup_content
        self._complete_state = complete_state

    async def __call__(self, stream: str, received: Sequence[Received]) -> list[Item]:
        kind = self._kinds[stream]
        if kind == "OutputRoomEvent" and self._complete_state is None:
            # The body is trio-sync's own room message format: parsed once, as it is.
            return parse_items([r.data for r in received], [r.seq for r in received])
        docs: list[dict[str, Any] | BadMessage] = []
        for r in received:
            try:
                docs.append(await self._one(kind, r))
            except BadMessage as exc:
                docs.append(exc)
        if self._complete_state is not None and kind == "OutputRoomEvent":
            await self._complete_state([d for d in docs if isinstance(d, dict)])
        items = []
        for r, doc in zip(received, docs, strict=True):
            if isinstance(doc, BadMessage):
                items.append(Item(r.seq, wire.wire_bytes(r.headers, r.data), doc))
                continue
            raw = orjson.dumps(doc)
            try:
                items.append(Item(r.seq, raw, parse_message(raw)))
            except BadMessage as exc:
                items.append(Item(r.seq, wire.wire_bytes(r.headers, r.data), exc))
        return items

    async def _one(self, kind: str, r: Received) -> dict[str, Any]:
        h = r.headers
        if kind == "OutputRoomEvent":
            return wire.body(r.data)
        if kind == "OutputClientData":
            doc = wire.body(r.data)
            content: object = wire.content_carried(doc)
            if self._lookup_content is not None:
                found = await self._lookup_content(
                    wire.header(h, "user_id"), str(doc.get("room_id") or ""), str(doc.get("type"))
                )
                content = found if found is not None else content
            return wire.client_data(h, doc, content)
        if kind == "OutputReceiptEvent":
            return wire.receipt(h)
        if kind == "OutputTypingEvent":
            return wire.typing(h)
        if kind == "OutputSendToDeviceEvent":
            return wire.send_to_device(wire.body(r.data))
        if kind == "OutputKeyChangeEvent":
            return wire.key_change(wire.body(r.data))
        if kind == "OutputNotificationData":
            return wire.notification_data(h, wire.body(r.data))
        assert kind == "OutputPresenceEvent"
        return wire.presence(h)


def check_jetstream_url(url: str) -> None:
    """``ValueError`` (one clear line at the command line) unless ``url`` is a NATS URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise ValueError(f"--jetstream must be nats://HOST:PORT, not {url!r}")


async def connect(url: str) -> NATS:
    """Runs in asyncio: a NATS connection that reconnects forever by itself."""
    return await nats.connect(
        servers=[url],
        name="trio-sync",
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=_log_error,
        disconnected_cb=_log_disconnected,
        reconnected_cb=_log_reconnected,
    )


async def _log_error(exc: Exception) -> None:
    log.debug("NATS: %s", _describe(exc))


async def _log_disconnected() -> None:
    log.warning("NATS: disconnected; reconnecting")


async def _log_reconnected() -> None:
    log.info("NATS: reconnected")


async def run_jetstream(
    url: str,
    prefix: str,
    ingestor: Ingestor,
    translate: Translator,
    *,
    batch_size: int = 500,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Consume every output stream of ``prefix`` at ``url`` into ``ingestor``, forever.

    Ready once each stream's committed position is read (NATS may still be unreachable:
    the first connection is retried with backoff like every later one). Cancellation
    stops every stream between batches and closes the connection.
    """
    delay = 0.1
    while True:
        try:
            nc = await run_asyncio(connect, url)
            break
        except NATS_ERRORS as exc:
            if delay == 0.1:
                task_status.started()
                task_status = trio.TASK_STATUS_IGNORED
            log.warning("NATS at %s: %s; retrying in %.1fs", url, _describe(exc), delay)
            await trio.sleep(delay)
            delay = min(delay * 2, 10.0)
    try:
        async with trio.open_nursery() as nursery:
            for settings in wire.STREAMS:
                source = StreamSource(nc, prefix, settings, translate, batch_size=batch_size)
                await nursery.start(run_source, source, ingestor)
            task_status.started()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await _quietly(run_asyncio(nc.close))
