"""Relaying to NATS JetStream, consuming through the inbox: exactly-once effects.

Each test uses its own stream and subject prefix on the machine's NATS; the outage test
runs a nats-server of its own (own port, own storage directory) and kills it mid-batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nats
import pytest
from messaging_support import (
    Env,
    Finished,
    HookedPublisher,
    NatsServer,
    append_events,
    assert_exactly_once_in_order,
    effect_handler,
    effect_rows,
    unique,
)

from eventfold.eventstore.causation import correlated
from eventfold.eventstore.records import START
from eventfold.messaging.errors import BrokerUnavailable
from eventfold.messaging.inbox import Inbox
from eventfold.messaging.nats import JetStreamConsumer, JetStreamPublisher, nats_relay
from eventfold.messaging.relay import Relay
from eventfold.projections import Runner, status


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh (stream, subject prefix) pair; the stream is deleted afterwards."""
    stream, prefix = unique("TEST").replace("-", "_"), unique("test").replace("-", "_")
    yield stream, prefix
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await client.close()


def runner(env: Env, *relays: Relay) -> Runner:
    return Runner(
        env.store, relays, engine=env.engine, batch_size=40, lease_ttl=2.0, lease_retry=0.1,
        idle_wait=0.2, error_backoff=0.2,
    )


async def stored_messages(url: str, stream: str) -> int:
    client = await nats.connect(url)
    try:
        info = await client.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await client.close()


async def finish(env: Env, run: Runner, consumer: JetStreamConsumer, expected: int):  # type: ignore[no-untyped-def]
    result = await env.store.append("Done-1", [Finished()])
    await run.wait_until(result.global_position, timeout=60)
    await consumer.wait_until(lambda stats: stats.processed >= expected + 1, timeout=60)
    return (await env.store.read_stream("Done-1"))[-1].event_id


def consumer_for(env: Env, url: str, stream: str, prefix: str) -> JetStreamConsumer:
    return JetStreamConsumer(
        Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
        durable=unique("view"), servers=url, stream=stream, subject_prefix=prefix,
    )


async def test_every_event_reaches_the_consumer_once_in_stream_order(
    env: Env, nats_url: str, jetstream: tuple[str, str]
) -> None:
    stream, prefix = jetstream
    relay = nats_relay("to-nats", nats_url, stream=stream, subject_prefix=prefix)
    ids = await append_events(env.store, streams=5, per_stream=20)
    async with consumer_for(env, nats_url, stream, prefix) as consumer, runner(env, relay) as run:
        sentinel = await finish(env, run, consumer, len(ids))
    await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])
    assert await stored_messages(nats_url, stream) == len(ids) + 1


async def test_messages_carry_the_msg_id_subject_and_headers(
    env: Env, nats_url: str, jetstream: tuple[str, str]
) -> None:
    stream, prefix = jetstream
    with correlated("req-9"):
        result = await env.store.append("Item-3", [Finished()])
    relay = nats_relay("to-nats", nats_url, stream=stream, subject_prefix=prefix)
    async with runner(env, relay) as run:
        await run.wait_until(result.global_position)
    await relay.close()
    client = await nats.connect(nats_url)
    try:
        message = await client.jetstream().get_msg(stream, seq=1)
    finally:
        await client.close()
    [record] = await env.store.read_stream("Item-3")
    assert message.subject == f"{prefix}.Item.Finished"
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == str(record.event_id)
    assert message.headers["correlation-id"] == "req-9"
    assert message.headers["Content-Type"] == "application/cloudevents+json"
    body = json.loads(message.data or b"")
    assert body["id"] == str(record.event_id) and body["type"] == "Finished"


async def test_a_relay_killed_mid_batch_republishes_and_jetstream_drops_the_copies(
    env: Env, nats_url: str, jetstream: tuple[str, str]
) -> None:
    stream, prefix = jetstream
    ids = await append_events(env.store, streams=3, per_stream=10)
    crashing = HookedPublisher(
        JetStreamPublisher(nats_url, stream=stream, subject_prefix=prefix), after=12
    )
    first = runner(env, Relay("to-nats", crashing))
    await first.start()
    async with asyncio.timeout(30):
        await crashing.reached.wait()
    await first.stop(timeout=0)  # the crash: the batch's transaction never commits
    await crashing.close()
    [relay_status] = await status(env.store, env.engine, [Relay("to-nats", crashing)])
    assert relay_status.checkpoint == START
    assert await stored_messages(nats_url, stream) == 12

    relay = nats_relay("to-nats", nats_url, stream=stream, subject_prefix=prefix)
    async with (
        consumer_for(env, nats_url, stream, prefix) as consumer,
        runner(env, relay) as second,
    ):
        sentinel = await finish(env, second, consumer, len(ids))
    await relay.close()
    # 12 messages were published twice; JetStream's duplicate window kept one of each.
    assert relay.published == len(ids) + 1
    assert await stored_messages(nats_url, stream) == len(ids) + 1
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])


async def test_a_server_killed_mid_batch_loses_nothing(
    pg_env: Env, own_nats: NatsServer
) -> None:
    env = pg_env
    stream, prefix = "OUTAGE", "outage"

    async def kill_server() -> None:
        await own_nats.stop()

    real = JetStreamPublisher(own_nats.url, stream=stream, subject_prefix=prefix, ack_timeout=2)
    hooked = HookedPublisher(real, after=15, mode="hook", hook=kill_server)
    relay = Relay("to-nats", hooked)
    ids = await append_events(env.store, streams=4, per_stream=10)
    run = runner(env, relay)
    await run.start()
    try:
        async with asyncio.timeout(30):
            await hooked.reached.wait()
        # The rest of the batch went to a dead server: no acks, the batch rolls back.
        async with asyncio.timeout(30):
            await hooked.failed.wait()
        assert isinstance(hooked.error, BrokerUnavailable)
        [down] = await status(env.store, env.engine, [relay])
        assert down.checkpoint == START and down.parked == 0
        await own_nats.start()  # same port, same storage: the 15 stored messages survive
        async with JetStreamConsumer(
            Inbox(env.engine, "orders-view"), effect_handler("orders-view"),
            durable="view", servers=own_nats.url, stream=stream, subject_prefix=prefix,
        ) as consumer:
            sentinel = await finish(env, run, consumer, len(ids))
    finally:
        await run.stop()
        await relay.close()
    assert await stored_messages(own_nats.url, stream) == len(ids) + 1
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), [*ids, sentinel])

