"""Partitioned relays: ``partitions=N`` splits a relay by stream id; runners share the
partitions, every event is published, each stream in order by the one partition it belongs
to, and a partition's checkpoint moves only past what the broker confirmed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest
import sqlalchemy as sa
from messaging_support import (
    Env,
    Finished,
    append_events,
    assert_exactly_once_in_order,
    effect_rows,
    unique,
)
from test_messaging_kafka import consumer_for
from test_relay_transactions import StandInBroker, append

from eventfold.eventstore.records import partition_of
from eventfold.eventstore.schema import checkpoints
from eventfold.messaging.kafka import kafka_relay
from eventfold.messaging.relay import Message, Relay
from eventfold.projections import (
    FailurePolicy,
    Runner,
    list_parked,
    repartition,
    retry_parked,
    status,
)

COUNT = 4
OPTIONS = {
    "batch_size": 15,
    "lease_ttl": 0.6,
    "lease_retry": 0.05,
    "idle_wait": 0.1,
    "error_backoff": 0.05,
}
NO_RETRIES = FailurePolicy(retries=0)


async def _until(probe: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s")
        await asyncio.sleep(0.05)


async def _positions(env: Env, name: str) -> dict[str, tuple[int, int]]:
    async with env.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    checkpoints.c.name, checkpoints.c.transaction_id, checkpoints.c.position
                ).where(checkpoints.c.name.startswith(name + "/"))
            )
        ).all()
    return {row[0]: (int(row[1]), int(row[2])) for row in rows}


def test_relays_and_their_factories_take_a_partition_count() -> None:
    relay = kafka_relay("out", partitions=3)
    assert relay.partitions == 3
    assert Relay("out", StandInBroker()).partitions == 1
    for bad in (0, -2, True):
        with pytest.raises(ValueError, match="partitions must be a whole number"):
            Relay("out", StandInBroker(), partitions=bad)


async def test_two_runners_publish_every_event_once_each_stream_in_order(env: Env) -> None:
    broker = StandInBroker()
    ids = [str(i) for i in await append_events(env.store, streams=12, per_stream=8)]
    a = Runner(
        env.store,
        [Relay("out", broker, partitions=COUNT)],
        engine=env.engine,
        holder="a",
        **OPTIONS,
    )
    b = Runner(
        env.store,
        [Relay("out", broker, partitions=COUNT)],
        engine=env.engine,
        holder="b",
        **OPTIONS,
    )
    async with a, b:
        await _until(lambda: _all_sent(broker, ids))
        more = [str(i) for i in await append_events(env.store, streams=12, per_stream=2)]
        await _until(lambda: _all_sent(broker, [*ids, *more]))

        async def caught_up() -> bool:
            [entry] = await status(env.store, env.engine, [Relay("out", broker, partitions=COUNT)])
            return entry.events_behind == 0

        await _until(caught_up)
        [entry] = await status(env.store, env.engine, [Relay("out", broker, partitions=COUNT)])
    assert sorted(broker.sent) == sorted([*ids, *more])  # once each: no crash, no copy
    order = {message_id: n for n, message_id in enumerate(broker.sent)}
    records = await env.store.read_all(limit=1000)
    by_stream: dict[str, list[int]] = {}
    for record in records:
        by_stream.setdefault(record.stream_id, []).append(order[str(record.event_id)])
    assert all(sent == sorted(sent) for sent in by_stream.values())
    assert [p.name for p in entry.partitions] == [f"out/{i}" for i in range(COUNT)]
    assert {p.holder for p in entry.partitions} <= {"a", "b"}


async def _all_sent(broker: StandInBroker, ids: list[str]) -> bool:
    return set(ids) <= set(broker.sent)


class Watching(StandInBroker):
    """Notes any message handed over while its partition's checkpoint was already past it."""

    def __init__(self, env: Env) -> None:
        super().__init__()
        self.env = env
        self.early: list[str] = []
        self.watched = 0

    async def publish(self, messages: Sequence[Message]) -> None:
        positions = await _positions(self.env, "out")
        for message in messages:
            assert message.record is not None
            record = message.record
            unit = f"out/{partition_of(record.stream_id, COUNT)}"
            if positions.get(unit, (0, 0)) >= tuple(record.global_position):
                self.early.append(message.message_id)
            self.watched += 1
        await super().publish(messages)


async def test_a_partitions_checkpoint_moves_only_past_what_the_broker_confirmed(
    env: Env,
) -> None:
    """A refused message parks in its partition, with its stream's later events behind it
    (none of them is sent ahead of it), while the other partitions and streams go on."""
    streams = [f"Cart-{n}" for n in range(8)]
    home = partition_of(streams[0], COUNT)
    first = await append(env, *[(s, "a") for s in streams])
    refused = first[0]
    broker = Watching(env)
    broker.refuse = {refused}
    relay = Relay("out", broker, partitions=COUNT, failure=NO_RETRIES)
    async with Runner(env.store, [relay], engine=env.engine, holder="a", **OPTIONS) as runner:
        second = await append(env, *[(s, "b") for s in streams])
        third = await append(env, *[(s, "c") for s in streams])
        done = await env.store.append("Done-1", [Finished()])
        await runner.wait_until(done.global_position)
    parked = await list_parked(env.engine, f"out/{home}")
    assert [str(p.event_id) for p in parked] == [refused, second[0], third[0]]
    assert {p.subscriber for p in await list_parked(env.engine, "out")} == {f"out/{home}"}
    # Never sent ahead of the refused message: its stream waits behind it.
    assert second[0] not in broker.tries and third[0] not in broker.tries
    [finished] = await env.store.read_stream("Done-1")
    assert set(broker.sent) == {*first[1:], *second[1:], *third[1:], str(finished.event_id)}
    # No message was handed to the broker after its partition's checkpoint had passed it.
    assert broker.watched >= len(broker.sent) and broker.early == []

    broker.refuse = set()
    result = await retry_parked(env.store, env.engine, relay)
    assert [str(p.event_id) for p in result.applied] == [refused, second[0], third[0]]
    assert broker.sent[-3:] == [refused, second[0], third[0]]


async def test_partitions_of_a_kafka_relay_keep_each_streams_order(
    pg_env: Env, kafka_url: str
) -> None:
    env, topic = pg_env, unique("orders")
    ids = await append_events(env.store, streams=10, per_stream=12)
    relays = [kafka_relay("to-kafka", kafka_url, topic=topic, partitions=COUNT) for _ in "ab"]
    consumer = consumer_for(env, kafka_url, topic)
    a = Runner(env.store, [relays[0]], engine=env.engine, holder="a", **OPTIONS)
    b = Runner(env.store, [relays[1]], engine=env.engine, holder="b", **OPTIONS)
    try:
        async with consumer, a, b:
            await consumer.wait_until(lambda stats: stats.processed >= len(ids), timeout=60)
    finally:
        for relay in relays:
            await relay.close()
    assert_exactly_once_in_order(await effect_rows(env.engine, "orders-view"), ids)


async def test_a_stopped_relay_is_repartitioned_and_publishes_nothing_twice(env: Env) -> None:
    broker = StandInBroker()
    ids = [str(i) for i in await append_events(env.store, streams=9, per_stream=5)]
    async with Runner(
        env.store, [Relay("out", broker, partitions=COUNT)], engine=env.engine, **OPTIONS
    ):
        await _until(lambda: _all_sent(broker, ids))

        async def committed() -> bool:
            [entry] = await status(env.store, env.engine, [Relay("out", broker, partitions=COUNT)])
            return entry.events_behind == 0

        await _until(committed)
    # Each partition's checkpoint is at its own last event: they differ, yet none is behind.
    assert len(set((await _positions(env, "out")).values())) > 1
    two = Relay("out", broker, partitions=2)
    assert await repartition(env.store, env.engine, two) is not None
    assert set(await _positions(env, "out")) == {"out/0", "out/1"}
    more = [str(i) for i in await append_events(env.store, streams=9, per_stream=2)]
    async with Runner(env.store, [two], engine=env.engine, **OPTIONS):
        await _until(lambda: _all_sent(broker, more))
    assert sorted(broker.sent) == sorted([*ids, *more])  # once each
