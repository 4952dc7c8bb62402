"""Projections that write a whole batch at once (``apply_batch``), and deliveries that
decode their event only when it is read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from projection_support import Env, ItemAdded, ItemRemoved, Poison
from sqlalchemy.dialects import postgresql, sqlite

from eventfold.eventstore import Event, EventRegistry, RecordedEvent, connect
from eventfold.projections import (
    Delivery,
    FailurePolicy,
    Projection,
    ProjectionContext,
    ReadModel,
    Runner,
    handles,
    list_parked,
)


class StreamCounts(Projection):
    """Per stream, the number of its events: each batch as one multi-row upsert.

    Reads the envelopes alone, except for SKUs when ``poisoned`` names some."""

    name = "bulk_counts"
    metadata = sa.MetaData()
    counts = sa.Table(
        "test_bulk_counts", metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
    )
    failure = FailurePolicy(retries=1, backoff=0.001)

    def __init__(self, *, poisoned: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.poisoned = poisoned
        self.batches: list[int] = []

    @handles(ItemAdded, ItemRemoved)
    async def _counted(self, event: Event, ctx: ProjectionContext) -> None:
        raise AssertionError("apply_batch writes every batch, one-event ones included")

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        self.batches.append(len(batch))
        counts: dict[str, int] = {}
        for delivery in batch:
            if self.poisoned and getattr(delivery.event, "sku", None) in self.poisoned:
                raise Poison(f"{delivery.record.stream_id} is poisoned")
            stream = delivery.record.stream_id
            counts[stream] = counts.get(stream, 0) + 1
        if not counts:
            return
        conn = model.connection
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        table = model.tables["test_bulk_counts"]
        rows = insert(table).values([{"stream_id": s, "events": n} for s, n in counts.items()])
        await conn.execute(rows.on_conflict_do_update(
            index_elements=["stream_id"], set_={"events": table.c.events + rows.excluded.events}
        ))


class ReadingCounts(StreamCounts):
    """StreamCounts under another name (a checkpoint of its own), reading every event."""

    name = "reading_counts"
    metadata = sa.MetaData()
    counts = StreamCounts.counts.to_metadata(metadata)

    def __init__(self) -> None:
        super().__init__(poisoned=frozenset({"nothing"}))


async def _counts(env: Env) -> dict[str, int]:
    return {row[0]: row[1] for row in await env.rows(StreamCounts.counts)}


async def _drop(env: Env) -> None:
    async with env.engine.begin() as conn:
        await conn.run_sync(StreamCounts.metadata.drop_all)


async def test_one_failing_event_in_a_bulk_batch_parks_and_the_rest_commits(env: Env) -> None:
    await _drop(env)
    await env.store.append("Cart-1", [ItemAdded(sku="ok-1"), ItemAdded(sku="poison")])
    await env.store.append("Cart-2", [ItemAdded(sku="ok-2"), ItemRemoved(sku="ok-2")])
    await env.store.append("Cart-1", [ItemAdded(sku="after")])
    last = await env.store.append("Cart-3", [ItemAdded(sku="ok-3")])
    projection = StreamCounts(poisoned=frozenset({"poison"}))
    async with Runner(env.store, [projection], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    # The whole batch was tried first, then the events one by one.
    assert projection.batches[0] == 6 and set(projection.batches[1:]) == {1}
    # The good events commit (Cart-1's first one before the failure, the other streams'
    # after it); the failing event parks and its stream's later event parks behind it.
    assert await _counts(env) == {"Cart-1": 1, "Cart-2": 2, "Cart-3": 1}
    head, behind = await list_parked(env.engine, "bulk_counts")
    assert head.stream_id == "Cart-1" and "Poison: Cart-1 is poisoned" in head.error
    assert head.attempts == 1 + StreamCounts.failure.retries
    assert behind.blocked_by == head.position and behind.attempts == 0


async def test_a_writer_of_envelopes_never_decodes_events(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _drop(env)
    decoded: list[RecordedEvent] = []
    decode = env.store.registry.decode

    def counting(record: RecordedEvent) -> Event:
        decoded.append(record)
        return decode(record)

    monkeypatch.setattr(env.store.registry, "decode", counting)
    await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="b")])
    async with Runner(env.store, [StreamCounts()], engine=env.engine, **Env.runner_options) as r:
        await r.wait_until(last.global_position)
    assert await _counts(env) == {"Cart-1": 2, "Cart-2": 1}
    assert decoded == []


async def test_an_event_that_does_not_decode_parks_only_where_it_is_read(
    db_env: Env,
) -> None:
    env = db_env
    await _drop(env)
    await env.store.append("Cart-1", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
    last = await env.store.append("Cart-2", [ItemAdded(sku="b")])
    # A reader whose registry lacks ItemRemoved: that event cannot be decoded.
    async with connect(env.url, EventRegistry([ItemAdded])) as partial:
        envelopes, reading = StreamCounts(), ReadingCounts()
        async with Runner(partial, [envelopes], engine=env.engine, **Env.runner_options) as r:
            await r.wait_until(last.global_position)
        # Counting envelopes needs no event: all three are counted, nothing parks.
        assert await _counts(env) == {"Cart-1": 2, "Cart-2": 1}
        assert await list_parked(env.engine) == []
        await _drop(env)
        async with Runner(partial, [reading], engine=env.engine, **Env.runner_options) as r:
            await r.wait_until(last.global_position)
    # Reading the events: the undecodable one parks at once (no retry can help).
    assert await _counts(env) == {"Cart-1": 1, "Cart-2": 1}
    [parked] = await list_parked(env.engine, "reading_counts")
    assert parked.event_type == "ItemRemoved" and "UnknownEventType" in parked.error
    assert parked.attempts == 1


def test_a_delivery_decodes_its_event_once() -> None:
    registry = EventRegistry([ItemAdded])
    record = RecordedEvent(
        uuid.uuid4(), "Cart-1", 1, 1, 1, "ItemAdded", 1, {"sku": "a", "quantity": 1}, {},
        datetime.now(UTC),
    )
    calls: list[RecordedEvent] = []

    def decode(r: RecordedEvent) -> Event:
        calls.append(r)
        return registry.decode(r)

    delivery = Delivery(record, decode=decode)
    assert calls == []
    assert delivery.event == ItemAdded(sku="a") and delivery.event is delivery.event
    assert calls == [record]
    assert Delivery(record, ItemAdded(sku="a")).event == ItemAdded(sku="a")
    with pytest.raises(TypeError, match="decoded event or a decode function"):
        Delivery(record)
