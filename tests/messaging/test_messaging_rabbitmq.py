"""Relaying to the machine's RabbitMQ, consuming through the inbox: exactly-once effects.

Every test declares its own exchange and queue (unique names) and deletes them after.
The connection-loss test closes the relay's own connection from the server side
(`rabbitmqctl close_connection`), never anyone else's; a full broker restart is too slow
for the suite and would disturb other users of the broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from messaging_support import (
    Env,
    Finished,
    HookedPublisher,
    ItemAdded,
    append_events,
    assert_exactly_once_in_order,
    close_rabbitmq_connection,
    effect_handler,
    effect_rows,
    free_port,
    last_position,
    unique,
)

from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.causation import correlated
from eventfold.eventstore.records import START
from eventfold.messaging.errors import BrokerUnavailable
from eventfold.messaging.inbox import Inbox
from eventfold.messaging.rabbitmq import RabbitMQConsumer, RabbitMQPublisher, rabbitmq_relay
from eventfold.messaging.relay import Relay
from eventfold.projections import Runner, status
from eventfold.projections.database import Database
from eventfold.projections.subscription import Subscription

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def exchange(rabbitmq_url: str) -> AsyncIterator[str]:
    """A fresh exchange name; the exchange and the test's queues are deleted afterwards."""
    name = unique("test-ex")
    yield name
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)
        for queue in _queues.pop(name, []):
            await channel.queue_delete(queue)


_queues: dict[str, list[str]] = {}


def queue_for(exchange: str) -> str:
    name = unique("test-q")
    _queues.setdefault(exchange, []).append(name)
    return name


def runner(env: Env, *relays: Relay) -> Runner:
    return Runner(
        env.store, relays, engine=env.engine, batch_size=40, lease_ttl=2.0, lease_retry=0.1,
        idle_wait=0.2, error_backoff=0.1,
    )


async def finish(env: Env, run: Runner, consumer: RabbitMQConsumer, expected: int) -> uuid.UUID:
    """Append the sentinel, let the relay publish it and the consumer handle everything."""
    result = await env.store.append("Done-1", [Finished()])
    await run.wait_until(result.global_position, timeout=30)
    await consumer.wait_until(lambda stats: stats.processed >= expected + 1, timeout=30)
    return (await env.store.read_stream("Done-1"))[-1].event_id


async def test_every_event_reaches_the_consumer_once_in_stream_order(
    env: Env, rabbitmq_url: str, exchange: str
) -> None:
    consumer = RabbitMQConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        queue=queue_for(exchange), url=rabbitmq_url, exchange=exchange,
    )
    relay = rabbitmq_relay("to-rabbit", rabbitmq_url, exchange=exchange)
    async with consumer:
        ids = await append_events(env.store, streams=5, per_stream=20)
        async with runner(env, relay) as run:
            sentinel = await finish(env, run, consumer, len(ids))
        await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])
    assert consumer.stats.duplicates == 0
    assert relay.published == len(ids) + 1
    [relay_status] = await status(env.store, env.engine, [relay])
    assert relay_status.events_behind == 0 and relay_status.parked == 0


async def test_messages_carry_the_envelope_ids_and_headers(
    env: Env, rabbitmq_url: str, exchange: str
) -> None:
    queue_name = queue_for(exchange)
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(ex, "Item.ItemAdded")  # routing key: <category>.<event_type>
        await env.store.append(
            "Item-7", [ItemAdded(sku="a")],
        )
        with correlated("req-1", traceparent=TRACEPARENT):
            result = await env.store.append("Item-7", [ItemAdded(sku="b")])
        relay = rabbitmq_relay(
            "to-rabbit", rabbitmq_url, exchange=exchange, source="eventfold://shop"
        )
        async with runner(env, relay) as run:
            await run.wait_until(result.global_position)
        await relay.close()
        first = await queue.get(timeout=5)
        second = await queue.get(timeout=5)
        records = await env.store.read_stream("Item-7")
    assert [first.message_id, second.message_id] == [str(r.event_id) for r in records]
    assert second.type == "ItemAdded"
    assert second.content_type == "application/cloudevents+json"
    assert second.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert second.routing_key == "Item.ItemAdded"
    assert second.correlation_id == "req-1"
    assert second.headers["correlation-id"] == "req-1"
    assert second.headers["traceparent"] == TRACEPARENT
    body = json.loads(second.body)
    assert body["source"] == "eventfold://shop"
    assert body["subject"] == "Item-7" and body["streamversion"] == 2
    assert body["data"] == {"sku": "b", "n": 0}
    assert "correlation-id" not in first.headers  # only what the event has


async def test_a_relay_killed_mid_batch_republishes_and_the_inbox_drops_the_copies(
    env: Env, rabbitmq_url: str, exchange: str
) -> None:
    consumer = RabbitMQConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        queue=queue_for(exchange), url=rabbitmq_url, exchange=exchange,
    )
    async with consumer:
        ids = await append_events(env.store, streams=3, per_stream=10)
        crashing = HookedPublisher(RabbitMQPublisher(rabbitmq_url, exchange=exchange), after=12)
        first = runner(env, Relay("to-rabbit", crashing))
        await first.start()
        await _wait(crashing)
        await first.stop(timeout=0)  # the crash: the batch's transaction never commits
        await crashing.close()
        [relay_status] = await status(env.store, env.engine, [Relay("to-rabbit", crashing)])
        assert relay_status.checkpoint == START, "the checkpoint ran ahead of the broker"

        relay = rabbitmq_relay("to-rabbit", rabbitmq_url, exchange=exchange)
        async with runner(env, relay) as second:
            sentinel = await finish(env, second, consumer, len(ids))
        await relay.close()
    # The 12 messages confirmed before the crash arrived twice; their effects happened once.
    assert consumer.stats.duplicates == 12
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_lost_connection_mid_batch_loses_nothing(
    pg_env: Env, rabbitmq_url: str, exchange: str
) -> None:
    env = pg_env
    consumer = RabbitMQConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        queue=queue_for(exchange), url=rabbitmq_url, exchange=exchange,
    )
    name = unique("relay-conn")
    closed: list[int] = []

    async def close_it() -> None:
        closed.append(await close_rabbitmq_connection(name))

    real = RabbitMQPublisher(rabbitmq_url, exchange=exchange, connection_name=name)
    hooked = HookedPublisher(real, after=15, mode="hook", hook=close_it)
    relay = Relay("to-rabbit", hooked)
    async with consumer:
        ids = await append_events(env.store, streams=4, per_stream=10)
        async with runner(env, relay) as run:
            sentinel = await finish(env, run, consumer, len(ids))
        await relay.close()
    assert closed == [1], "the relay's connection was closed by the server"
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_an_outage_holds_the_checkpoint_and_parks_nothing(
    env: Env, rabbitmq_url: str, exchange: str
) -> None:
    consumer = RabbitMQConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        queue=queue_for(exchange), url=rabbitmq_url, exchange=exchange,
    )
    publisher = RabbitMQPublisher(
        f"amqp://guest:guest@127.0.0.1:{free_port()}/", exchange=exchange, connect_timeout=1
    )
    relay = Relay("to-rabbit", publisher)
    async with consumer:
        ids = await append_events(env.store, streams=2, per_stream=5)
        async with runner(env, relay) as run:
            with pytest.raises(TimeoutError, match="BrokerUnavailable"):
                await run.wait_until(await last_position(env.store, "Item-1"), timeout=2)
            [down] = await status(env.store, env.engine, [relay])
            assert down.checkpoint == START and down.parked == 0
            publisher.url = rabbitmq_url  # the broker is back
            sentinel = await finish(env, run, consumer, len(ids))
        await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_replay_publishes_nothing(env: Env, rabbitmq_url: str, exchange: str) -> None:
    queue_name = queue_for(exchange)
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(ex, "#")
        await append_events(env.store, streams=2, per_stream=3)
        relay = rabbitmq_relay("to-rabbit", rabbitmq_url, exchange=exchange)
        replay = Subscription(env.store, Database(env.engine), relay, replaying=True)
        await replay.setup()
        assert await replay.step() == 6
        assert relay.published == 0
        # The live relay goes on after the replayed events: only new ones are published.
        result = await env.store.append("Item-0", [ItemAdded(sku="new")])
        async with runner(env, relay) as run:
            await run.wait_until(result.global_position)
        await relay.close()
        message = await queue.get(timeout=5)
        assert json.loads(message.body)["data"]["sku"] == "new"
        assert await queue.get(fail=False) is None


async def test_a_consumer_that_cannot_reach_the_broker_says_so(env: Env) -> None:
    consumer = RabbitMQConsumer(
        Inbox(env.engine, "x"), effect_handler("x"), queue="never",
        url=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
    )
    with pytest.raises(BrokerUnavailable, match="RabbitMQ at"):
        await consumer.start()
    await consumer.stop()


async def _wait(hooked: HookedPublisher) -> None:
    async with asyncio.timeout(30):
        await hooked.reached.wait()


async def test_a_consumer_that_loses_its_connection_logs_down_once_and_up_once(
    pg_env: Env, rabbitmq_url: str, exchange: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    queue = queue_for(exchange)
    consumer = RabbitMQConsumer(
        Inbox(pg_env.engine, "outage-view"), effect_handler("outage-view"), queue=queue,
        url=rabbitmq_url, exchange=exchange, reconnect=Backoff(initial=0.05, cap=0.2, jitter=True),
    )
    async with consumer:
        assert await close_rabbitmq_connection(f"eventfold-inbox:{queue}") == 1
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            target = await channel.get_exchange(exchange)
            await target.publish(aio_pika.Message(b"not a CloudEvent"), routing_key="Outage.Tested")
        # Delivered once the consumer is back on the queue.
        await consumer.wait_until(lambda stats: stats.unreadable >= 1, timeout=60)
    lines = [r.getMessage() for r in caplog.records
             if r.name == "eventfold.rabbitmq" and r.levelno >= logging.WARNING]
    assert len(lines) == 2, lines
    assert "is down" in lines[0] and "is up again after 1 failed attempts" in lines[1]
    assert not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in caplog.text
