"""The composition root shared by ``trio-sync serve`` and embedding applications.

``open_service`` starts, in one nursery: storage (migrations applied), the notifier
(positions and joined-members map loaded), the ingest task (and a followed log file if
configured) and the typing-expiry task, then the HTTP server. Leaving the context stops
it in reverse: HTTP stops accepting and drains (waiting long-polls are answered at once),
then ingest is cancelled, then storage is closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry

from .bridge import open_bridge
from .config import Config
from .homeserver import HomeserverDatabase, open_optional_homeserver_database
from .homeserver.auth import Authenticator
from .homeserver.lookups import HomeserverLookups
from .homeserver.providers import Rechecking, choose_provider
from .homeserver.token_cache import TokenCache
from .homeserver.versions import HomeserverVersions
from .http.app import create_app
from .http.asgi import ASGIApp
from .ingest import Applied, Ingestor
from .ingest.runner import current_token
from .notifier import Notifier
from .observability.endpoints import ops_app
from .observability.health import DatabaseProbe, Readiness
from .observability.metrics import install_gc_timing, service_registry
from .sliding.handler import SlidingSyncHandler
from .sources import in_process
from .sources.file import follow_file
from .sources.in_process import client_writer
from .sources.jetstream import Translator, check_jetstream_url, run_jetstream
from .storage import Engine, open_engine
from .storage.accounts import (
    TOKEN_CHANNEL,
    TOKEN_COUNTER_SQL,
    add_device,
    new_token,
    remove_device,
)
from .storage.rooms import joined_rooms_map
from .sync.handler import SyncHandler
from .sync.presence_tracker import PresenceTracker
from .typing_state import run_typing_expiry

log = logging.getLogger(__name__)

#: Seconds the homeserver's ``/versions`` answer is reused.
VERSIONS_TTL = 60.0


@dataclass
class Service:
    """A running trio-sync: its ASGI app, ingest entry points and bound addresses."""

    config: Config
    engine: Engine
    notifier: Notifier
    ingestor: Ingestor
    sync: SyncHandler
    readiness: Readiness
    probe: DatabaseProbe
    #: The homeserver's database (read only), when ``config.homeserver_database`` is set.
    homeserver_db: HomeserverDatabase | None = None
    #: ``authenticate(token)`` with the cache every token provider shares.
    auth: Authenticator = field(init=False)
    #: The HTTP client for the homeserver (``homeserver_url``), when one is configured.
    homeserver_client: httpx.AsyncClient | None = None
    #: The homeserver's ``/versions``, merged into trio-sync's own answer.
    homeserver_versions: HomeserverVersions | None = None
    sliding: SlidingSyncHandler = field(init=False)
    app: ASGIApp = field(init=False)
    registry: CollectorRegistry = field(init=False)
    addresses: list[str] = field(default_factory=list)
    #: Where ``/metrics`` and ``/health`` are served alone (``config.metrics_listen``).
    metrics_addresses: list[str] = field(default_factory=list)

    async def ingest(self, messages: Iterable[Mapping[str, Any] | bytes | str]) -> Applied:
        """Apply output-log messages in-process (dicts, or their JSON text), in order.

        Returns once they are committed and waiting clients have been woken.
        """
        return await self.ingest_raw(in_process.encode(messages), source="in-process")

    async def client_write(self, messages: Sequence[Mapping[str, Any]]) -> Applied:
        """Apply log messages built by client endpoints, as one batch (source ``client``).

        Returns once they are committed (durable) and the clients that must see them
        have been woken.
        """
        return await client_writer(self.ingestor)(messages)

    async def ingest_raw(self, raws: Sequence[bytes], source: str) -> Applied:
        """Apply raw log messages from ``source``, in batches of ``config.batch_size``.

        Each message's offset (in ``ingest_rejects`` and ``Applied.rejects``) is its index
        in ``raws``.
        """
        return await in_process.submit_in_batches(
            self.ingestor, source, raws, self.config.batch_size
        )

    async def add_device(
        self,
        user_id: str,
        device_id: str,
        token: str | None = None,
        *,
        session_id: int | None = None,
    ) -> str:
        """Register a device and return its access token.

        ``session_id`` is the homeserver's session of the device: events whose log
        message carries ``transaction_id.session_id`` equal to it get their
        ``unsigned.transaction_id`` when served to this device.
        """
        token = token or new_token()
        await self.engine.write(add_device, user_id, device_id, token, session_id)
        self.auth.invalidate()
        return token

    async def remove_device(self, user_id: str, device_id: str) -> bool:
        """Delete a device: its token stops working at once. False if it did not exist."""
        removed = await self.engine.write(remove_device, user_id, device_id)
        self.auth.invalidate()
        return removed


def hypercorn_config(config: Config, listen: str | None = None) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [listen or config.listen or "127.0.0.1:0"]
    hc.graceful_timeout = config.graceful_timeout
    hc.keep_alive_timeout = config.keep_alive_timeout
    # Hypercorn's default (1,000) closes a long-polling client's connection every few
    # hours of polling, for nothing: the client only reconnects.
    hc.keep_alive_max_requests = config.keep_alive_max_requests
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


async def _serve_http(
    app: ASGIApp,
    hc: HypercornConfig,
    stop: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]],
) -> None:
    """Hypercorn until ``stop`` is set (then a graceful drain); ``done`` once it ended."""
    try:
        await serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
    finally:
        done.set()


@asynccontextmanager
async def _homeserver_client(config: Config) -> AsyncIterator[httpx.AsyncClient | None]:
    if not config.homeserver_url:
        yield None
        return
    async with httpx.AsyncClient(timeout=config.homeserver_timeout) as client:
        yield client


async def _start_auth(config: Config, service: Service, nursery: trio.Nursery) -> Authenticator:
    """The authenticator the ``auth`` setting names; for ``local``, with the token-change
    watch running in ``nursery``, for ``homeserver-database`` its re-check of cached
    tokens."""
    provider = choose_provider(
        config, service.engine, service.homeserver_db, service.homeserver_client
    )
    cache = TokenCache(
        ttl=provider.ttl,
        negative_ttl=config.auth_negative_ttl,
        size=config.auth_cache_size,
        negative_size=max(config.auth_cache_size // 10, 1),
    )
    watch = None
    if config.auth == "local":
        watch = service.engine.change_watch(TOKEN_CHANNEL, TOKEN_COUNTER_SQL)
        await nursery.start(watch.run)
    authenticator = Authenticator(provider, cache, watch)
    if isinstance(provider, Rechecking) and config.auth_recheck_interval > 0:
        nursery.start_soon(authenticator.recheck_forever, config.auth_recheck_interval, provider)
    return authenticator


@asynccontextmanager
async def open_service(config: Config) -> AsyncIterator[Service]:
    """Run trio-sync inside the caller's task tree for as long as the context is open.

    Startup order: the metrics listener (when ``config.metrics_listen`` is set: its
    ``/health`` answers 503 until the service is ready) → storage (migrations) →
    positions loaded → ingest ready → HTTP listening (when ``config.listen`` is set;
    ``service.addresses`` then holds the bound URLs).
    Cancellation of the caller cancels everything; a normal exit drains HTTP first
    (up to ``config.graceful_timeout`` seconds).
    """
    config.check()
    install_gc_timing()
    readiness = Readiness("opening storage")
    registry = service_registry(
        parked=lambda: readiness.service.notifier.waiting() if readiness.service else 0,
        streams=lambda: readiness.service.notifier.streams() if readiness.service else 0,
    )
    async with trio.open_nursery() as outer:
        stop_metrics, metrics_done = trio.Event(), trio.Event()
        metrics_addresses: list[str] = []
        if config.metrics_listen:
            hc = hypercorn_config(config, config.metrics_listen)
            app = ops_app(readiness, registry)
            metrics_addresses = await outer.start(_serve_http, app, hc, stop_metrics, metrics_done)
            log.info("metrics and health on %s", ", ".join(metrics_addresses))
        try:
            async with _open_service(config, readiness, registry) as service:
                service.metrics_addresses = metrics_addresses
                yield service
        finally:
            stop_metrics.set()
            outer.cancel_scope.cancel()


@asynccontextmanager
async def _open_service(
    config: Config, readiness: Readiness, registry: CollectorRegistry
) -> AsyncIterator[Service]:
    if config.jetstream:
        check_jetstream_url(config.jetstream)
    bridge = open_bridge() if config.jetstream else nullcontext()
    async with bridge, open_engine(config.database) as engine:
        readiness.phase = "loading positions"
        notifier = Notifier(await engine.read(current_token), await engine.read(joined_rooms_map))
        homeserver = open_optional_homeserver_database(config.homeserver_database)
        async with (
            homeserver as homeserver_db,
            _homeserver_client(config) as client,
            trio.open_nursery() as nursery,
        ):
            readiness.phase = "starting ingest"
            ingestor = Ingestor(engine, notifier)
            await nursery.start(ingestor.run)
            await nursery.start(run_typing_expiry, notifier.typing, notifier.typing_expired)
            presence = None
            if config.writes_local:  # else presence is the homeserver's to write
                presence = PresenceTracker(client_writer(ingestor))
                await nursery.start(presence.run)
            lookups = (
                None if homeserver_db is None else HomeserverLookups(homeserver_db.engine, engine)
            )
            handler = SyncHandler(
                engine, notifier, presence, None if lookups is None else lookups.key_counts
            )
            probe = DatabaseProbe(engine)
            await nursery.start(probe.run)
            service = Service(
                config, engine, notifier, ingestor, handler, readiness, probe, homeserver_db
            )
            service.sliding = SlidingSyncHandler(engine, notifier, handler)
            service.registry = registry
            service.homeserver_client = client
            if client is not None and config.homeserver_url:
                service.homeserver_versions = HomeserverVersions(
                    client, config.homeserver_url, VERSIONS_TTL
                )
            service.auth = await _start_auth(config, service, nursery)
            service.app = create_app(service)
            if config.log:
                await nursery.start(
                    partial(
                        follow_file,
                        config.log,
                        ingestor,
                        batch_lines=config.batch_size,
                        poll_interval=config.follow_poll_interval,
                    )
                )
            if config.jetstream:
                await nursery.start(
                    partial(
                        run_jetstream,
                        config.jetstream,
                        config.jetstream_prefix,
                        ingestor,
                        Translator(
                            config.jetstream_prefix,
                            None if lookups is None else lookups.account_data,
                            None if lookups is None else lookups.complete_state,
                        ),
                        batch_size=config.batch_size,
                    )
                )
            stop_http = trio.Event()
            http_done = trio.Event()
            if config.listen:
                service.addresses = await nursery.start(
                    _serve_http, service.app, hypercorn_config(config), stop_http, http_done
                )
                log.info("listening on %s", ", ".join(service.addresses))
            else:
                http_done.set()
            readiness.service = service
            readiness.phase = "ready"
            try:
                yield service
            finally:
                readiness.phase = "shutting down"
                stop_http.set()
                notifier.close()
                with trio.CancelScope(shield=True), trio.move_on_after(config.graceful_timeout + 1):
                    await http_done.wait()
                nursery.cancel_scope.cancel()
