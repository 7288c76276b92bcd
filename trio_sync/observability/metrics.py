"""Prometheus metrics: what the running process measures, exposed by ``GET /metrics``.

The counters and histograms are process-wide (one set however many services a process
runs), created unregistered and added to each service's registry. Gauges of current state
(parked long-polls, notifier streams) are read from the service when scraped, so keeping
them costs nothing per request. Every name starts with ``trio_sync_``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = [
    "BATCH_COMMIT",
    "CONTENT_TYPE_LATEST",
    "DB_OPERATION",
    "INGEST_LAG",
    "INGEST_MESSAGES",
    "REQUESTS",
    "REQUEST_TIME",
    "SYNC_COMPLETE",
    "SYNC_EMPTY",
    "SYNC_INCREMENTAL",
    "SYNC_RESPONSES",
    "WAKEUPS",
    "exposition",
    "install_gc_timing",
    "report_lag",
    "service_registry",
]

#: Seconds; long-polls last up to minutes, so the top buckets reach beyond the usual 10 s.
_REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
_FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)

REQUESTS = Counter(
    "trio_sync_http_requests",
    "HTTP requests answered, by route template, method and status",
    ["endpoint", "method", "status"],
    registry=None,
)
REQUEST_TIME = Histogram(
    "trio_sync_http_response_time_seconds",
    "Time from request to response (long-polls include their wait), by route template, "
    "method and status",
    ["endpoint", "method", "status"],
    buckets=_REQUEST_BUCKETS,
    registry=None,
)
SYNC_RESPONSES = Counter(
    "trio_sync_sync_responses",
    "/sync responses by kind: complete (no since or full_state), incremental (with news), "
    "empty (a long-poll that timed out or was ended by shutdown with nothing new)",
    ["kind"],
    registry=None,
)
SYNC_COMPLETE = SYNC_RESPONSES.labels("complete")
SYNC_INCREMENTAL = SYNC_RESPONSES.labels("incremental")
SYNC_EMPTY = SYNC_RESPONSES.labels("empty")
WAKEUPS = Counter(
    "trio_sync_notifier_wakeups",
    "Parked users' streams woken because something for them was committed",
    registry=None,
)
INGEST_MESSAGES = Counter(
    "trio_sync_ingest_messages",
    "Log messages ingested, by source and outcome (applied, duplicate, rejected)",
    ["source", "outcome"],
    registry=None,
)
INGEST_LAG = Gauge(
    "trio_sync_ingest_lag",
    "Newest available position of a source minus its committed position "
    "(bytes for a followed file)",
    ["source"],
    registry=None,
)
BATCH_COMMIT = Histogram(
    "trio_sync_ingest_batch_seconds",
    "Time to apply and commit one ingest batch (one write transaction)",
    buckets=_FAST_BUCKETS,
    registry=None,
)
DB_OPERATION = Histogram(
    "trio_sync_db_operation_seconds",
    "Storage operations (one transaction, one hop off the event loop), by engine and kind",
    ["engine", "kind"],
    buckets=_FAST_BUCKETS,
    registry=None,
)
GC_PAUSE = Histogram(
    "trio_sync_gc_pause_seconds",
    "Python garbage collection pauses, by generation",
    ["generation"],
    buckets=_FAST_BUCKETS,
    registry=None,
)
_PROCESS_WIDE = (
    REQUESTS,
    REQUEST_TIME,
    SYNC_RESPONSES,
    WAKEUPS,
    INGEST_MESSAGES,
    INGEST_LAG,
    BATCH_COMMIT,
    DB_OPERATION,
    GC_PAUSE,
)


def report_lag(source: str, lag: int) -> None:
    """A source's hook: how far its committed position is behind its newest one."""
    INGEST_LAG.labels(source).set(max(lag, 0))


def _gc_callback() -> Callable[[str, dict[str, Any]], None]:
    started = 0.0

    def callback(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        elif started:
            GC_PAUSE.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - started)
            started = 0.0

    return callback


_gc_installed: list[Callable[[str, dict[str, Any]], None]] = []


def install_gc_timing() -> None:
    """Time every garbage collection of this process (idempotent)."""
    if not _gc_installed:
        _gc_installed.append(_gc_callback())
        gc.callbacks.append(_gc_installed[0])


class _StateCollector(Collector):
    """Gauges read from a running service at scrape time."""

    def __init__(self, parked: Callable[[], int], streams: Callable[[], int]) -> None:
        self._parked = parked
        self._streams = streams

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "trio_sync_parked_long_polls",
            "/sync requests waiting in the notifier now",
            value=self._parked(),
        )
        yield GaugeMetricFamily(
            "trio_sync_notifier_streams",
            "Users' notifier streams kept (one per recently syncing user)",
            value=self._streams(),
        )


def service_registry(parked: Callable[[], int], streams: Callable[[], int]) -> CollectorRegistry:
    """A registry with every process-wide metric plus the state gauges of one service."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in _PROCESS_WIDE:
        registry.register(metric)
    registry.register(_StateCollector(parked, streams))
    ProcessCollector(registry=registry)  # memory, CPU time, open files
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
