"""Relaying to Kafka, consuming through the inbox: exactly-once effects.

The broker is a real Kafka when EVENTFOLD_TEST_KAFKA_URL is set, else a Tansu broker the
session starts (the pytest header says which); each test uses a topic and a group of its
own. The outage tests run a Tansu of their own, on their own port, and kill it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka_broker import TansuBroker
from messaging_support import (
    Env,
    Finished,
    HookedPublisher,
    append_events,
    assert_exactly_once_in_order,
    effect_handler,
    effect_rows,
    last_position,
    make_registry,
    unique,
)
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore import connect
from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.causation import correlated
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.records import START, RecordedEvent
from eventfold.messaging.errors import BrokerUnavailable, MessageRejected
from eventfold.messaging.inbox import Inbox
from eventfold.messaging.kafka import KafkaConsumer, KafkaPublisher, kafka_relay
from eventfold.messaging.relay import Message, Relay
from eventfold.projections import FailurePolicy, Runner, status
from eventfold.projections.observability import Metrics

QUICK = Backoff(initial=0.05, cap=0.5, jitter=True)


def runner(env: Env, *relays: Relay) -> Runner:
    return Runner(
        env.store, relays, engine=env.engine, batch_size=40, lease_ttl=2.0, lease_retry=0.1,
        idle_wait=0.2, error_backoff=0.2,
    )


def consumer_for(env: Env, url: str, topic: str, group: str | None = None) -> KafkaConsumer:
    return KafkaConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        group=group or unique("view"), servers=url, topic=topic, reconnect=QUICK,
    )


async def finish(env: Env, run: Runner, consumer: KafkaConsumer, expected: int):  # type: ignore[no-untyped-def]
    """Append the sentinel and wait until the consumer handled it; returns its id."""
    result = await env.store.append("Done-1", [Finished()])
    await run.wait_until(result.global_position, timeout=60)
    await consumer.wait_until(lambda stats: stats.processed >= expected + 1, timeout=60)
    return (await env.store.read_stream("Done-1"))[-1].event_id


async def read_topic(url: str, topic: str, count: int) -> list[object]:
    """At least ``count`` messages of ``topic``, from the start of its partitions (no group,
    nothing committed)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=url, auto_offset_reset="earliest")
    await consumer.start()
    found: list[object] = []
    try:
        async with asyncio.timeout(30):
            while len(found) < count:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    found.extend(messages)
    finally:
        await consumer.stop()
    return found


async def test_every_event_reaches_the_consumer_once_in_stream_order(
    env: Env, kafka_url: str
) -> None:
    topic, registry = unique("orders"), CollectorRegistry()
    relay = kafka_relay("to-kafka", kafka_url, topic=topic)
    ids = await append_events(env.store, streams=5, per_stream=20)
    consumer = KafkaConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"), group="view",
        servers=kafka_url, topic=topic, metrics=Metrics.of(registry),
    )
    async with consumer, runner(env, relay) as run:
        sentinel = await finish(env, run, consumer, len(ids))
        await consumer.wait_until(lambda _: sum(p.committed for p in consumer.lag()) > len(ids))
        lag = consumer.lag()
    await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])
    assert consumer.stats.duplicates == 0
    assert lag and sum(p.lag for p in lag) == 0
    assert sum(p.committed for p in lag) == len(ids) + 1
    gauges = {
        sample.labels["partition"]: sample.value
        for metric in registry.collect() if metric.name == "eventfold_consumer_lag"
        for sample in metric.samples
    }
    assert gauges == {str(p.partition): 0.0 for p in lag}

    # The group resumes where it committed: nothing behind, nothing delivered again.
    async with consumer_for(env, kafka_url, topic, group="view") as again:
        resumed = await again.wait_until(
            lambda _: sum(p.committed for p in again.lag()) == len(ids) + 1
        )
        assert sum(p.lag for p in again.lag()) == 0 and resumed.delivered == 0


async def test_messages_carry_the_stream_key_the_event_id_and_the_cloudevent(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic = pg_env, unique("orders")
    with correlated("req-9"):
        result = await env.store.append("Item-3", [Finished(), Finished()])
    relay = kafka_relay("to-kafka", kafka_url, topic=topic, source="eventfold://shop")
    async with runner(env, relay) as run:
        await run.wait_until(result.global_position)
    await relay.close()
    records: list[RecordedEvent] = await env.store.read_stream("Item-3")
    messages = await read_topic(kafka_url, topic, 2)
    assert [m.offset for m in messages] == [0, 1]  # type: ignore[attr-defined]
    for message, record in zip(messages, records, strict=True):
        headers = {k: v.decode() for k, v in message.headers}  # type: ignore[attr-defined]
        assert message.key == b"Item-3"  # type: ignore[attr-defined]
        assert headers["message-id"] == str(record.event_id)
        assert headers["correlation-id"] == "req-9"
        assert headers["content-type"] == "application/cloudevents+json"
        body = json.loads(message.value)  # type: ignore[attr-defined]
        assert body["id"] == str(record.event_id) and body["type"] == "Finished"
        assert body["source"] == "eventfold://shop" and body["subject"] == "Item-3"


async def test_a_relay_killed_mid_batch_republishes_and_the_inbox_drops_the_copies(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic = pg_env, unique("orders")
    ids = await append_events(env.store, streams=3, per_stream=10)
    crashing = HookedPublisher(KafkaPublisher(kafka_url, topic=topic), after=12)
    first = runner(env, Relay("to-kafka", crashing))
    await first.start()
    async with asyncio.timeout(30):
        await crashing.reached.wait()
    await first.stop(timeout=0)  # the crash: the batch's transaction never commits
    await crashing.close()
    [relay_status] = await status(env.store, env.engine, [Relay("to-kafka", crashing)])
    assert relay_status.checkpoint == START

    relay = kafka_relay("to-kafka", kafka_url, topic=topic)
    async with consumer_for(env, kafka_url, topic) as consumer, runner(env, relay) as second:
        sentinel = await finish(env, second, consumer, len(ids))
    await relay.close()
    assert consumer.stats.duplicates == 12
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


def kafka_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "eventfold.kafka" and r.levelno >= logging.WARNING]


async def test_a_broker_killed_mid_batch_and_restarted_loses_nothing_and_applies_nothing_twice(
    pg_env: Env, own_tansu: TansuBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Tansu keeps its log in memory: the restarted broker is empty, so the relay's batch,
    whose checkpoint never moved, is all that reaches the consumer again."""
    caplog.set_level(logging.INFO)
    env, topic = pg_env, "orders"

    async def kill_broker() -> None:
        own_tansu.stop()

    real = KafkaPublisher(own_tansu.url, topic=topic, ack_timeout=3, reconnect=QUICK)
    hooked = HookedPublisher(real, after=15, mode="hook", hook=kill_broker)
    relay = Relay("to-kafka", hooked)
    ids = await append_events(env.store, streams=4, per_stream=10)
    run = runner(env, relay)
    consumer = consumer_for(env, own_tansu.url, topic, group="view")
    await consumer.start()
    await run.start()
    try:
        async with asyncio.timeout(30):
            await hooked.failed.wait()
        assert isinstance(hooked.error, BrokerUnavailable)
        [down] = await status(env.store, env.engine, [relay])
        assert down.checkpoint == START and down.parked == 0
        await consumer.wait_until(lambda _: consumer.health.down, timeout=30)  # noticed too
        own_tansu.start()  # same port, empty
        sentinel = await finish(env, run, consumer, len(ids))
    finally:
        await run.stop()
        await consumer.stop()
        await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])
    lines = kafka_warnings(caplog)
    assert sorted(line.split(" (")[0].split(" after")[0] for line in lines) == [
        f"Kafka at {own_tansu.url} is down", f"Kafka at {own_tansu.url} is down",
        f"Kafka at {own_tansu.url} is up again", f"Kafka at {own_tansu.url} is up again",
    ], lines  # the relay's two lines and the consumer's two
    assert "Traceback" not in caplog.text


async def test_no_transaction_is_open_while_kafka_acknowledges(
    env: Env, own_tansu: TansuBroker
) -> None:
    """The broker is frozen (SIGSTOP) while a batch waits for its acks: nothing is open."""
    from transaction_probe import open_transactions

    look = open_transactions(env.kind, env.url)
    seen_open: list[str] = []
    real = KafkaPublisher(own_tansu.url, topic="orders")

    async def frozen_while_waiting() -> None:
        assert own_tansu.process is not None
        own_tansu.process.send_signal(signal.SIGSTOP)
        try:
            seen_open.extend(await asyncio.to_thread(look))
        finally:
            own_tansu.process.send_signal(signal.SIGCONT)

    hooked = HookedPublisher(real, after=5, mode="hook", hook=frozen_while_waiting)
    relay = Relay("to-kafka", hooked)
    ids = await append_events(env.store, streams=2, per_stream=10)
    consumer = consumer_for(env, own_tansu.url, "orders")
    async with consumer, runner(env, relay) as run:
        sentinel = await finish(env, run, consumer, len(ids))
    await relay.close()
    assert hooked.state.interrupted and seen_open == []
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_consumer_that_cannot_reach_the_broker_says_so(pg_env: Env) -> None:
    consumer = consumer_for(pg_env, "127.0.0.1:1", "orders")
    with pytest.raises(BrokerUnavailable, match=r"Kafka at 127\.0\.0\.1:1 is unavailable"):
        await consumer.start()


def killed_process(*args: str) -> int:
    """Run tests/messaging/kafka_crash.py until it kills itself; return its exit status."""
    here = Path(__file__).resolve().parent
    process = subprocess.run(
        [sys.executable, str(here / "kafka_crash.py"), *args], capture_output=True, text=True,
        timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parents[1])])},
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    return process.returncode


async def test_a_relay_process_killed_by_sigkill_mid_batch_loses_nothing(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic = pg_env, unique("orders")
    ids = await append_events(env.store, streams=3, per_stream=10)
    killed_process("relay", env.url, kafka_url, topic, "12")
    [relay_status] = await status(env.store, env.engine, [kafka_relay("to-kafka", kafka_url)])
    assert relay_status.checkpoint == START  # 12 acknowledged, the checkpoint never moved

    relay = kafka_relay("to-kafka", kafka_url, topic=topic)
    async with consumer_for(env, kafka_url, topic) as consumer, runner(env, relay) as run:
        sentinel = await finish(env, run, consumer, len(ids))
    await relay.close()
    assert consumer.stats.duplicates == 12
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_consumer_process_killed_by_sigkill_mid_batch_applies_nothing_twice(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic, group = pg_env, unique("orders"), unique("view")
    ids = await append_events(env.store, streams=1, per_stream=30)  # one partition
    relay = kafka_relay("to-kafka", kafka_url, topic=topic)
    async with runner(env, relay) as run:
        await run.wait_until(await last_position(env.store, "Item-0"))
        killed_process("consumer", env.url, kafka_url, topic, group, "10")
        assert len(await effect_rows(env.engine, "orders-view")) == 10
        async with consumer_for(env, kafka_url, topic, group=group) as consumer:
            sentinel = await finish(env, run, consumer, len(ids) - 10)
    await relay.close()
    # Its offset was not committed: the ten it applied come again, and the inbox drops them.
    assert consumer.stats.duplicates == 10
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_failing_handler_is_redelivered_and_an_unreadable_message_passed_over(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic = pg_env, unique("orders")
    effect = effect_handler("orders-view")
    attempts = 0

    async def flaky(record: RecordedEvent, conn: AsyncConnection) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise RuntimeError("the handler's dependency is down")
        await effect(record, conn)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_url, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not a CloudEvent", key=b"Item-0")
    finally:
        await producer.stop()
    relay = kafka_relay("to-kafka", kafka_url, topic=topic)
    ids = await append_events(env.store, streams=1, per_stream=3)
    consumer = KafkaConsumer(
        Inbox(env.engine, "orders-view"), flaky, group="view", servers=kafka_url, topic=topic,
        failure=FailurePolicy(retries=0, backoff=0), redeliver_delay=0.05,
    )
    async with consumer, runner(env, relay) as run:
        sentinel = await finish(env, run, consumer, len(ids))
        await consumer.wait_until(lambda _: sum(p.committed for p in consumer.lag()) == 5)
    await relay.close()
    # The first event failed twice (each time rewound and fetched again), then went through.
    assert consumer.stats.failed == 2 and consumer.stats.unreadable == 1
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


KAFKA_APP = '''
import os

from messaging_support import Finished, ItemAdded, effect_handler

from eventfold import App
from eventfold.eventstore.engine import create_engine
from eventfold.messaging.inbox import Inbox
from eventfold.messaging.kafka import KafkaConsumer, kafka_relay

servers, topic = os.environ["TEST_KAFKA"], os.environ["TEST_TOPIC"]
inbox = Inbox(create_engine(os.environ["TEST_DB"]), "orders-view")
app = App(
    events=[ItemAdded, Finished],
    subscribers=[kafka_relay("to-kafka", servers, topic=topic)],
    consumers=[
        KafkaConsumer(inbox, effect_handler("orders-view"), group="view", servers=servers,
                      topic=topic),
        KafkaConsumer(Inbox(inbox.engine, "audit"), effect_handler("audit"), group="audit",
                      servers="127.0.0.1:1", topic=topic),
    ],
)
'''


def test_projections_status_shows_each_partitions_backlog(
    kafka_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from eventfold.cli import app as cli
    from eventfold.eventstore.migrate import migrate

    url, topic = f"sqlite:///{tmp_path / 'store.db'}", unique("orders")
    (tmp_path / "kafka_app.py").write_text(KAFKA_APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in {"TEST_KAFKA": kafka_url, "TEST_TOPIC": topic, "TEST_DB": url}.items():
        monkeypatch.setenv(name, value)

    async def relay_ten() -> None:
        await migrate(url)
        async with connect(url, make_registry()) as store:
            ids = await append_events(store, streams=2, per_stream=5)
            relay = kafka_relay("to-kafka", kafka_url, topic=topic)
            async with Runner(store, [relay], engine=create_engine(url)) as run:
                await run.wait_until(await last_position(store, "Item-1"))
            await relay.close()
        assert len(ids) == 10

    asyncio.run(relay_ten())
    result = CliRunner().invoke(
        cli, ["-d", url, "-a", "kafka_app:app", "projections", "status", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    [view, audit] = json.loads(result.stdout)["consumers"]
    assert view["name"] == "orders-view" and view["error"] is None
    assert sum(p["lag"] for p in view["partitions"]) == 10  # nothing consumed yet
    assert {p["committed"] for p in view["partitions"]} == {0}
    assert audit["partitions"] == [] and "Kafka at 127.0.0.1:1 is unavailable" in audit["error"]
    table = CliRunner().invoke(cli, ["-d", url, "-a", "kafka_app:app", "projections", "status"])
    assert table.exit_code == 0, table.output
    assert "consumers" in table.stdout
    assert "audit: Kafka at 127.0.0.1:1 is unavailable" in table.stdout


async def test_a_message_kafka_refuses_is_named_and_those_before_it_are_confirmed(
    kafka_url: str,
) -> None:
    topic = unique("orders")
    publisher = KafkaPublisher(kafka_url, topic=topic)

    def message(body: bytes) -> Message:
        return Message(message_id=str(uuid.uuid4()), event_type="Tested", category="Refusal",
                       body=body)

    first, too_large, after = message(b"{}"), message(b"x" * 2_000_000), message(b"{}")
    try:
        with pytest.raises(MessageRejected) as refused:
            await publisher.publish([first, too_large, after])
    finally:
        await publisher.close()
    assert refused.value.message_id == too_large.message_id
    assert "MessageSizeTooLarge" in refused.value.reason
    [stored] = await read_topic(kafka_url, topic, 1)
    assert dict(stored.headers)["message-id"] == first.message_id.encode()  # type: ignore[attr-defined]
