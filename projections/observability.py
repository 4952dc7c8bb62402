"""OpenTelemetry spans and Prometheus metrics (optional extras: ``eventfold[otel,metrics]``).

Nothing here is imported unless asked for, so without the extras eventfold neither imports
``opentelemetry`` nor ``prometheus_client`` and its hooks stay no-ops.

``observe(...)`` installs an ``Observability`` instrument on
``eventfold.eventstore.instrumentation``:

- spans ``eventfold.append`` (each append), ``eventfold.load`` (each aggregate load),
  ``eventfold.batch`` (each subscriber batch, linked to the traces of its events) and
  ``eventfold.handle`` (a process manager handling one event, a child of the trace the
  event was appended in);
- W3C trace context in event metadata: ``traceparent`` is injected at append from the
  current span, and extracted when an event is handled, so a trace follows a request
  through the events it causes;
- metrics: appends and appended events, batch durations and events per subscriber.

``RunnerMetrics`` (or ``Runner(..., metrics_port=9464)``) adds the per-subscriber gauges -
events behind, seconds behind, parked events - refreshed from ``eventfold.projections.status``, and
serves the registry over HTTP with ``prometheus_client.start_http_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore import instrumentation
from eventfold.eventstore.instrumentation import Instrument
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import GlobalPosition, RecordedEvent
from eventfold.projections.status import status
from eventfold.projections.subscriber import Subscriber

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

logger = logging.getLogger("eventfold.observability")

_LINKS = 32
"""A batch span links to the traces of at most this many of its events."""


class Metrics:
    """eventfold's Prometheus metrics in one registry (created once per registry)."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[Any, Metrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.registry = registry
        self.appends = Counter(
            "eventfold_appends", "Appends to the event store (batches).", registry=registry
        )
        self.appended_events = Counter(
            "eventfold_appended_events", "Events appended to the event store.",
            registry=registry,
        )
        self.batch_duration = Histogram(
            "eventfold_batch_duration_seconds",
            "Time to process one subscriber batch (read to commit).", ["subscriber"],
            registry=registry,
        )
        self.batch_events = Counter(
            "eventfold_batch_events", "Events processed by a subscriber.", ["subscriber"],
            registry=registry,
        )
        self.events_behind = Gauge(
            "eventfold_subscriber_events_behind",
            "Events of the subscriber's types after its checkpoint.", ["subscriber"],
            registry=registry,
        )
        self.seconds_behind = Gauge(
            "eventfold_subscriber_seconds_behind",
            "Age of the oldest event the subscriber has still to process.", ["subscriber"],
            registry=registry,
        )
        self.parked = Gauge(
            "eventfold_subscriber_parked", "Events parked for the subscriber.", ["subscriber"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "eventfold_consumer_lag",
            "Messages of a broker partition the consumer has not committed yet.",
            ["consumer", "topic", "partition"], registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """The metrics registered in ``registry`` (default: prometheus_client's)."""
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        metrics = cls._by_registry.get(registry)
        if metrics is None:
            metrics = cls._by_registry[registry] = cls(registry)
        return metrics


class Observability(Instrument):
    """The instrument: OpenTelemetry spans (``tracer_provider``, default the global one)
    and/or Prometheus metrics (``metrics``)."""

    def __init__(
        self, *, tracing: bool = True, tracer_provider: Any = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self._tracer: Any = None
        if tracing:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )

            self._trace = trace
            self._tracer = trace.get_tracer("eventfold", tracer_provider=tracer_provider)
            self._propagator = TraceContextTextMapPropagator()

    def span(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
        """A span around an operation."""
        if self._tracer is None:
            return contextlib.nullcontext()
        return self._tracer.start_as_current_span(name, attributes=dict(attributes))  # type: ignore[no-any-return]

    @contextmanager
    def append(self, stream_id: str, count: int) -> Iterator[None]:
        """The append span (its context goes into the events' ``traceparent``), counted."""
        with self.span("eventfold.append", {"eventfold.stream_id": stream_id,
                                            "eventfold.events": count}):
            yield
        if self.metrics is not None:
            self.metrics.appends.inc()
            self.metrics.appended_events.inc(count)

    @contextmanager
    def batch(
        self, subscriber: str, records: Sequence[RecordedEvent], head: GlobalPosition
    ) -> Iterator[None]:
        """The batch span, linked to its events' traces, and the batch's duration."""
        started = time.perf_counter()
        if self._tracer is None:
            yield
        else:
            links = [
                self._trace.Link(context)
                for context in (self._context_of(r) for r in records[:_LINKS])
                if context is not None
            ]
            with self._tracer.start_as_current_span(
                "eventfold.batch", links=links,
                attributes={"eventfold.subscriber": subscriber, "eventfold.events": len(records)},
            ):
                yield
        if self.metrics is not None:
            self.metrics.batch_duration.labels(subscriber).observe(time.perf_counter() - started)
            self.metrics.batch_events.labels(subscriber).inc(len(records))

    def handling(self, subscriber: str, record: RecordedEvent) -> AbstractContextManager[Any]:
        """A span continuing the trace the event was appended in."""
        if self._tracer is None:
            return contextlib.nullcontext()
        carrier = {"traceparent": str(record.metadata.get("traceparent") or "")}
        return self._tracer.start_as_current_span(  # type: ignore[no-any-return]
            "eventfold.handle",
            context=self._propagator.extract(carrier),
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "eventfold.subscriber": subscriber, "eventfold.event_id": str(record.event_id),
                "eventfold.event_type": record.event_type,
                "eventfold.stream_id": record.stream_id,
            },
        )

    def traceparent(self) -> str | None:
        """The current span's W3C ``traceparent``."""
        if self._tracer is None:
            return None
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get("traceparent")

    def _context_of(self, record: RecordedEvent) -> Any:
        traceparent = record.metadata.get("traceparent")
        if not traceparent:
            return None
        context = self._propagator.extract({"traceparent": str(traceparent)})
        span_context = self._trace.get_current_span(context).get_span_context()
        return span_context if span_context.is_valid else None


def observe(
    *,
    tracing: bool = True,
    tracer_provider: Any = None,
    metrics: bool = True,
    registry: CollectorRegistry | None = None,
) -> Observability:
    """Install spans (needs ``eventfold[otel]``) and metrics (``eventfold[metrics]``) on
    every append, load, batch and handling of this process; returns the instrument.
    ``unobserve()`` removes it."""
    instrument = Observability(
        tracing=tracing, tracer_provider=tracer_provider,
        metrics=Metrics.of(registry) if metrics else None,
    )
    instrumentation.install(instrument)
    return instrument


def unobserve() -> None:
    """Back to no-op hooks."""
    instrumentation.install(None)


class Metered(Protocol):
    """What ``RunnerMetrics`` reads of a runner (a ``Runner`` is one). Named here so this
    module does not import the runner, which imports it when asked to serve metrics."""

    @property
    def store(self) -> EventStore:
        """The store the subscribers read."""
        ...

    @property
    def engine(self) -> AsyncEngine:
        """The engine their checkpoints, leases and parked events live on."""
        ...

    @property
    def subscribers(self) -> Sequence[Subscriber]:
        """The subscribers to report on."""
        ...


class RunnerMetrics:
    """A runner's per-subscriber gauges, refreshed every ``interval`` seconds, optionally
    served on ``port`` (0: any free port; ``.port`` tells which)."""

    def __init__(
        self,
        runner: Metered,
        *,
        port: int | None = None,
        registry: CollectorRegistry | None = None,
        interval: float = 5.0,
        address: str = "0.0.0.0",
    ) -> None:
        self.runner = runner
        self.registry = registry
        self.metrics = Metrics.of(registry)
        self.interval = interval
        self.address = address
        self.port = port
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._installed = False

    async def refresh(self) -> None:
        """Read every subscriber's lag and parked count and set the gauges."""
        subscribers = self.runner.subscribers
        for entry in await status(self.runner.store, self.runner.engine, subscribers):
            self.metrics.events_behind.labels(entry.name).set(entry.events_behind)
            self.metrics.seconds_behind.labels(entry.name).set(entry.seconds_behind)
            self.metrics.parked.labels(entry.name).set(entry.parked)

    async def start(self) -> None:
        """Count appends and batches (unless an instrument is installed already), serve the
        registry when a port is given, and refresh the gauges in the background."""
        if instrumentation.active() is None:
            instrumentation.install(Observability(tracing=False, metrics=self.metrics))
            self._installed = True
        if self.port is not None and self._server is None:
            from prometheus_client import REGISTRY, start_http_server

            server, _thread = start_http_server(
                self.port, addr=self.address, registry=self.registry or REGISTRY
            )
            self._server = server
            self.port = int(server.server_port)
        self._task = asyncio.create_task(self._refreshing(), name="eventfold-runner-metrics")

    async def stop(self) -> None:
        """Stop refreshing and serving."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._installed:
            instrumentation.install(None)
            self._installed = False

    async def _refreshing(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.warning("could not refresh the runner's metrics", exc_info=True)
            await asyncio.sleep(self.interval)


__all__ = ["Metrics", "Observability", "RunnerMetrics", "observe", "unobserve"]
