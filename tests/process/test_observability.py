"""Spans around append, load, batches and handling; trace context in metadata; metrics."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from saga_support import Env, Fulfilment, Order, Stock, instance_is, settle

from eventfold.eventstore import START, instrumentation
from eventfold.projections import Runner
from eventfold.projections.observability import RunnerMetrics, observe, unobserve


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of this test, recorded in memory (metrics off)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observe(tracer_provider=provider, metrics=False)
    try:
        yield exporter
    finally:
        unobserve()


async def test_a_trace_follows_the_events_a_request_causes(
    env: Env, spans: InMemorySpanExporter
) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await env.repository.create(Order, "o1", lambda o: o.place("apple", 2, 30))
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))
    await env.repository.get(Order, "o1")

    finished = spans.get_finished_spans()
    names = {span.name for span in finished}
    assert {"eventfold.append", "eventfold.load", "eventfold.batch",
            "eventfold.handle"} <= names
    (placed,) = await env.store.read_stream("Order-o1", to_version=1)
    (reserved,) = (await env.store.read_stream("Stock-apple"))[1:]
    # The order's append span is in its metadata; the saga's handling of it continues that
    # trace, and the reservation it appended carries the handling's context.
    _, trace_id, placed_span, _ = placed.metadata["traceparent"].split("-")
    handle = next(
        span for span in finished
        if span.name == "eventfold.handle"
        and span.attributes is not None
        and span.attributes["eventfold.event_id"] == str(placed.event_id)
    )
    assert f"{handle.context.trace_id:032x}" == trace_id
    assert handle.parent is not None and f"{handle.parent.span_id:016x}" == placed_span
    _, reserved_trace, _, _ = reserved.metadata["traceparent"].split("-")
    assert reserved_trace == trace_id
    batch = next(span for span in finished if span.name == "eventfold.batch")
    assert batch.links and batch.attributes is not None
    assert batch.attributes["eventfold.subscriber"] == "fulfilment"
    # The saga's commands load their aggregates through the repository, as the test does.
    loaded = [
        span.attributes["eventfold.stream_id"] for span in finished
        if span.name == "eventfold.load" and span.attributes is not None
    ]
    assert {"Stock-apple", "Payment-o1", "Order-o1"} <= set(loaded)
    assert loaded[-1] == "Order-o1"


async def test_runner_metrics(env: Env) -> None:
    registry = CollectorRegistry()
    observe(tracing=False, registry=registry)
    try:
        manager = Fulfilment()
        await env.repository.create(Stock, "apple", lambda s: s.receive(5))
        runner = Runner(env.store, [manager], engine=env.engine)
        metrics = RunnerMetrics(runner, registry=registry)
        await metrics.refresh()
        assert registry.get_sample_value(
            "eventfold_subscriber_events_behind", {"subscriber": "fulfilment"}
        ) == 0
        await env.repository.create(Order, "o1", lambda o: o.place("apple", 2, 30))
        # (On PostgreSQL the new event shows once no older transaction holds the horizon.)
        while registry.get_sample_value(
            "eventfold_subscriber_events_behind", {"subscriber": "fulfilment"}
        ) != 1:
            await env.store.wait_for_events(START, 0.2)
            await metrics.refresh()
        behind = registry.get_sample_value(
            "eventfold_subscriber_seconds_behind", {"subscriber": "fulfilment"}
        )
        assert behind is not None and behind >= 0
        async with runner:
            await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))
        await metrics.refresh()
    finally:
        unobserve()

    def sample(name: str, **labels: str) -> float:
        value = registry.get_sample_value(name, labels)
        assert value is not None, name
        return value

    # Stock, order, reservation, payment (2 events), confirmation.
    assert sample("eventfold_appends_total") == 5
    assert sample("eventfold_appended_events_total") == 6
    assert sample("eventfold_batch_duration_seconds_count", subscriber="fulfilment") >= 1
    # OrderPlaced, StockReserved, PaymentCharged: the saga's types.
    assert sample("eventfold_batch_events_total", subscriber="fulfilment") == 3
    assert sample("eventfold_subscriber_events_behind", subscriber="fulfilment") == 0
    assert sample("eventfold_subscriber_parked", subscriber="fulfilment") == 0


async def test_the_runner_serves_metrics_on_a_port(env: Env) -> None:
    manager = Fulfilment()
    async with Runner(env.store, [manager], engine=env.engine, metrics_port=0) as runner:
        assert runner.metrics is not None and runner.metrics.port
        await runner.metrics.refresh()
        url = f"http://127.0.0.1:{runner.metrics.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    text = body.decode()
    assert 'eventfold_subscriber_parked{subscriber="fulfilment"} 0.0' in text
    assert instrumentation.active() is None  # the runner removed what it installed


def test_without_observing_nothing_optional_is_imported() -> None:
    code = (
        "import sys, eventfold, eventfold.app\n"
        "import eventfold.processes.process_manager, eventfold.projections.trace\n"
        "bad = [m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus_client'))]\n"
        "assert not bad, bad\n"
        "from eventfold.eventstore import instrumentation\n"
        "assert instrumentation.active() is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
