"""Prometheus metrics for Bullet endpoints (the ``metrics`` extra: prometheus-client).

The only module that imports :mod:`prometheus_client`, and nothing in the
package imports it: metrics cost nothing unless a program asks for them::

    from bullet_py import metrics
    endpoint = setup(app, "/bullet", MyHandler)
    metrics.instrument(endpoint)        # counts start
    metrics.add_metrics_route(app)      # GET /metrics, Prometheus text format

Counters (opened and closed sessions, messages in and out, refusals,
overflows, log events, handler latency) are kept as they happen. Gauges
(sessions by transport and state, pending ids, parked polls, queued
messages, the Redis backend's state) are read from the endpoints when
Prometheus scrapes, so they cost nothing per message.

Several worker processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (before this
module is imported) prometheus-client keeps every process's values in files
there, and ``/metrics`` on any worker answers the sum. Gauges then cannot be
read at scrape time from other processes: each worker copies them into the
directory every ``refresh`` seconds instead (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from aiohttp import web

from .logs import NO_RECORDER, Recorder, event_hooks
from .web import ENDPOINTS, BulletEndpoint

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    from prometheus_client.registry import Collector
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "bullet_py.metrics needs prometheus-client: pip install 'bullet_py[metrics]'"
    ) from missing

TRANSPORTS = ("websocket", "eventsource", "poll", "send")

# Handler latency buckets, seconds: a callback is usually well under a millisecond.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

_RECONNECTED = "backend_reconnected"  # the Redis backend's log event on reconnection


def multiprocess_dir() -> str | None:
    """The directory prometheus-client's multiprocess mode writes to, if set."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class PrometheusRecorder(Recorder):
    """Counts what the sessions and transports report, in one Prometheus registry."""

    times_handlers = True

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.opened_total = counter(
            "bullet_connections_opened", "Sessions opened, by transport.", "transport"
        )
        self.closed_total = counter(
            "bullet_connections_closed",
            "Sessions ended, by the transport serving them last.",
            "transport",
        )
        self.in_total = counter(
            "bullet_messages_in", "Client messages received, by transport.", "transport"
        )
        self.out_total = counter(
            "bullet_messages_out", "Messages written to clients, by transport.", "transport"
        )
        self.refused_total = counter(
            "bullet_refusals", "Requests refused, by HTTP status and reason.", "status", "reason"
        )
        self.overflow_total = counter(
            "bullet_queue_overflows", "Full session queues, by overflow policy.", "policy"
        )
        self.resumed_total = counter(
            "bullet_resumptions", "Sessions resumed by a reconnecting client.", "transport"
        )
        self.events_total = counter(
            "bullet_log_events",
            "Structured log events, counted before level and rate filtering.",
            "event",
        )
        self.reconnects_total = counter(
            "bullet_redis_reconnects", "Reconnections of the Redis backend to Redis."
        )
        self.handler = Histogram(
            "bullet_handler_seconds",
            "Duration of handler callbacks, by callback.",
            ["callback"],
            buckets=_BUCKETS,
            registry=registry,
        )
        # Label children looked up once: a message pays a dict lookup and an inc().
        self._in = {t: self.in_total.labels(t) for t in TRANSPORTS}
        self._out = {t: self.out_total.labels(t) for t in TRANSPORTS}
        self._handler: dict[str, Histogram] = {}  # callback names: a handful
        for transport in TRANSPORTS:  # every series exists from the start, at 0
            self.opened_total.labels(transport)
            self.closed_total.labels(transport)
            self.resumed_total.labels(transport)

    def opened(self, transport: str) -> None:
        self.opened_total.labels(transport).inc()

    def closed(self, transport: str) -> None:
        self.closed_total.labels(transport).inc()

    def message_in(self, transport: str) -> None:
        child = self._in.get(transport)
        (child or self.in_total.labels(transport)).inc()

    def message_out(self, transport: str, n: int = 1) -> None:
        child = self._out.get(transport)
        (child or self.out_total.labels(transport)).inc(n)

    def refused(self, status: int, reason: str) -> None:
        self.refused_total.labels(str(status), reason).inc()

    def overflow(self, policy: str) -> None:
        self.overflow_total.labels(policy).inc()

    def handler_seconds(self, callback: str, seconds: float) -> None:
        child = self._handler.get(callback)
        if child is None:
            child = self._handler[callback] = self.handler.labels(callback)
        child.observe(seconds)

    def resumed(self, transport: str) -> None:
        self.resumed_total.labels(transport).inc()

    def event(self, name: str) -> None:
        """A structured log event (see :data:`bullet_py.logs.event_hooks`)."""
        self.events_total.labels(name).inc()
        if name == _RECONNECTED:
            self.reconnects_total.inc()


# --- gauges, read from the endpoints ------------------------------------------


@dataclass
class _Reading:
    name: str
    doc: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def add(self, value: float, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + value


def read_gauges(endpoints: Iterable[BulletEndpoint]) -> list[_Reading]:
    """The gauges of these endpoints now (what a scrape shows)."""
    sessions = _Reading(
        "bullet_sessions", "Live sessions, by transport and state.", ("transport", "state")
    )
    pending = _Reading("bullet_pending_sessions", "Ids issued to polling clients not back yet.", ())
    parked = _Reading("bullet_parked_polls", "Long polls waiting for a message.", ())
    queued = _Reading("bullet_queued_messages", "Messages waiting in session queues.", ())
    connected = _Reading(
        "bullet_redis_connected", "1 while the Redis backend's last exchange succeeded.", ()
    )
    buffered = _Reading(
        "bullet_redis_buffered_writes", "Writes waiting for Redis (grows in an outage).", ()
    )
    pending.add(0)
    parked.add(0)
    queued.add(0)
    for endpoint in endpoints:
        registry = endpoint.registry
        pending.add(registry.pending_count)
        for conn in registry:
            sessions.add(1, conn.transport.value, conn.core.state.value)
            parked.add(conn.parked_polls)
            queued.add(len(conn.outbox))
        # Read by duck typing: importing the Redis backend would import redis.
        broker = endpoint.hub.broker
        is_connected = getattr(broker, "connected", None)
        writes = getattr(broker, "buffered", None)
        if isinstance(is_connected, bool):
            connected.add(float(is_connected))
        if isinstance(writes, int):
            buffered.add(writes)
    return [sessions, pending, parked, queued, connected, buffered]


class EndpointCollector(Collector):
    """Gauges read from the instrumented endpoints at scrape time (one process)."""

    def __init__(self) -> None:
        self.endpoints: weakref.WeakSet[BulletEndpoint] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        for reading in read_gauges(list(self.endpoints)):
            family = GaugeMetricFamily(reading.name, reading.doc, labels=reading.labels)
            for labels, value in reading.values.items():
                family.add_metric(list(labels), value)
            yield family


# Multiprocess gauges: how one worker's values combine with the others'.
_MODES = {"bullet_redis_connected": "livemin"}


class SharedGauges:
    """The gauges copied into the multiprocess directory (workers cannot be read live)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.endpoints: weakref.WeakSet[BulletEndpoint] = weakref.WeakSet()
        self._registry = registry
        self._gauges: dict[str, Gauge] = {}
        self._seen: dict[str, set[tuple[str, ...]]] = {}

    def refresh(self) -> None:
        for reading in read_gauges(list(self.endpoints)):
            gauge = self._gauges.get(reading.name)
            if gauge is None:
                gauge = self._gauges[reading.name] = Gauge(
                    reading.name,
                    reading.doc,
                    reading.labels,
                    registry=self._registry,
                    multiprocess_mode=_MODES.get(reading.name, "livesum"),  # type: ignore[arg-type]
                )
            seen = self._seen.setdefault(reading.name, set())
            for labels in seen - reading.values.keys():
                (gauge.labels(*labels) if labels else gauge).set(0)
            for labels, value in reading.values.items():
                (gauge.labels(*labels) if labels else gauge).set(value)
                seen.add(labels)


@dataclass
class _Instruments:
    recorder: PrometheusRecorder
    collector: EndpointCollector | None
    shared: SharedGauges | None


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Instruments] = (
    weakref.WeakKeyDictionary()
)


def _instruments(registry: CollectorRegistry) -> _Instruments:
    found = _by_registry.get(registry)
    if found is None:
        recorder = PrometheusRecorder(registry)
        if _count_event not in event_hooks:
            event_hooks.append(_count_event)
        collector: EndpointCollector | None = None
        shared: SharedGauges | None = None
        if multiprocess_dir() is None:
            collector = EndpointCollector()
            registry.register(collector)
        else:
            shared = SharedGauges(registry)
        found = _by_registry[registry] = _Instruments(recorder, collector, shared)
    return found


def _count_event(name: str) -> None:
    """The log-event hook: every instrumented registry counts the event."""
    for found in list(_by_registry.values()):
        found.recorder.event(name)


def instrument(
    endpoint: BulletEndpoint, registry: CollectorRegistry | None = None
) -> PrometheusRecorder:
    """Count what ``endpoint`` does in ``registry`` (prometheus-client's default one).

    Call it before the app starts. Several endpoints may share one registry:
    their counts add up.
    """
    found = _instruments(registry or REGISTRY)
    endpoint.hub.recorder = found.recorder
    if found.collector is not None:
        found.collector.endpoints.add(endpoint)
    if found.shared is not None:
        found.shared.endpoints.add(endpoint)
    return found.recorder


def instrumented(endpoint: BulletEndpoint) -> bool:
    return endpoint.hub.recorder is not NO_RECORDER


def scrape(registry: CollectorRegistry | None = None) -> bytes:
    """The text a Prometheus scrape gets (every worker's sum in multiprocess mode)."""
    registry = registry or REGISTRY
    if multiprocess_dir() is None:
        return generate_latest(registry)
    shared = _instruments(registry).shared
    if shared is not None:
        shared.refresh()  # this worker's gauges exact; the others' as of their last refresh
    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return generate_latest(combined)


def add_metrics_route(
    app: web.Application,
    path: str = "/metrics",
    *,
    registry: CollectorRegistry | None = None,
    refresh: float = 5.0,
) -> None:
    """Serve ``GET path`` in Prometheus text format, instrumenting the app's endpoints.

    Every endpoint mounted on ``app`` with :func:`bullet_py.setup` is
    instrumented when the app starts (if it was not already). In multiprocess
    mode the worker also copies its gauges into the shared directory every
    ``refresh`` seconds while the app runs, and removes its live gauges when
    it stops.
    """
    registry = registry or REGISTRY

    async def serve_metrics(_: web.Request) -> web.Response:
        return web.Response(body=scrape(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def gauges_forever(_: web.Application) -> AsyncIterator[None]:
        for endpoint in app.get(ENDPOINTS, {}).values():
            if not instrumented(endpoint):
                instrument(endpoint, registry)
        shared = _instruments(registry).shared
        if shared is None:
            yield
            return

        async def loop() -> None:
            while True:
                shared.refresh()
                await asyncio.sleep(refresh)

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        directory = multiprocess_dir()
        if directory is not None:
            # Its live gauges leave the sums (a crashed worker's: see docs/operations.md).
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    app.router.add_get(path, serve_metrics)
    app.cleanup_ctx.append(gauges_forever)


__all__ = [
    "EndpointCollector",
    "PrometheusRecorder",
    "SharedGauges",
    "add_metrics_route",
    "instrument",
    "instrumented",
    "multiprocess_dir",
    "read_gauges",
    "scrape",
]
