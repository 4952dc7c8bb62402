"""Partitioned process managers: an instance's events and deadlines all belong to the
partition its key hashes to, whatever streams they come from; runners share the partitions
and each fires only the deadlines of the partitions it holds (handed over with them)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import field_validator
from saga_support import (
    Env,
    Fulfilment,
    Order,
    Stock,
    StockReceived,
    all_events,
    later,
    settle,
    types_of,
)

from eventfold.eventstore import Event, RecordedEvent
from eventfold.eventstore.records import partition_of
from eventfold.eventstore.schema import leases
from eventfold.processes.deadlines import DeadlinePoller, list_deadlines
from eventfold.processes.errors import ProcessDefinitionError
from eventfold.processes.process_manager import ProcessContext, ProcessManager, on
from eventfold.projections import (
    PartitionsChanged,
    ProjectionHeld,
    RepartitionRefused,
    Runner,
    Subscription,
    repartition,
)
from eventfold.projections.database import Database
from eventfold.projections.partitions import partitions_of, unit_of

COUNT = 4
OPTIONS: dict[str, Any] = {
    "lease_ttl": 0.6,
    "lease_retry": 0.05,
    "idle_wait": 0.1,
    "error_backoff": 0.05,
}


class SplitFulfilment(Fulfilment):
    """The saga of ``saga_support`` served as four partitions."""

    partitions = COUNT


async def _until(probe: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within}s")
        await asyncio.sleep(0.05)


async def _holdings(env: Env) -> dict[str, list[int]]:
    """Which partitions of ``fulfilment`` each runner holds now."""
    db = Database(env.engine)
    async with db.reading() as conn:
        rows = (
            await conn.execute(
                sa.select(leases.c.holder, leases.c.partition).where(
                    leases.c.name.startswith("fulfilment/"),
                    leases.c.partition >= 0,
                    leases.c.expires_at > db.now(),
                )
            )
        ).all()
    held: dict[str, list[int]] = {}
    for holder, partition in rows:
        held.setdefault(holder, []).append(int(partition))
    return {holder: sorted(parts) for holder, parts in held.items()}


async def _statuses(manager: ProcessManager[Any], env: Env, keys: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for key in keys:
        instance = await manager.instance(env.engine, key)
        found[instance.status if instance is not None else "missing"] += 1
    return found


def _record(event_type: str, stream_id: str, data: dict[str, Any]) -> RecordedEvent:
    from datetime import UTC, datetime
    from uuid import uuid4

    return RecordedEvent(
        uuid4(), stream_id, 1, 1, 1, event_type, 1, data, {}, datetime.now(UTC), None
    )


def test_events_go_to_the_partition_of_their_instance_key_not_their_stream() -> None:
    manager = SplitFulfilment()
    parts = partitions_of(manager)
    assert [p.index for p in parts] == [0, 1, 2, 3]
    assert all(p.in_store is None for p in parts)  # filtered by the manager's key
    placed = _record(
        "OrderPlaced", "Order-o7", {"order_id": "o7", "sku": "apple", "quantity": 1, "amount": 3}
    )
    reserved = _record(
        "StockReserved", "Stock-apple", {"order_id": "o7", "sku": "apple", "quantity": 1}
    )
    other = _record(
        "StockReserved", "Stock-apple", {"order_id": "o8", "sku": "apple", "quantity": 1}
    )
    assert manager.partition_key(placed) == manager.partition_key(reserved) == "o7"
    assert manager.partition_key(other) == "o8"
    # Unhandled, and unreadable: by stream (the partition it lands in parks the latter).
    assert manager.partition_key(_record("StockReceived", "Stock-pear", {})) == "Stock-pear"
    assert manager.partition_key(_record("StockReserved", "Stock-x", {"sku": "x"})) == "Stock-x"
    [home] = [p.index for p in parts if p.accepts(reserved)]
    assert home == partition_of("o7", COUNT)
    assert unit_of(manager, "fulfilment", [reserved]) == f"fulfilment/{home}"
    assert unit_of(Fulfilment(), "fulfilment", [reserved]) == "fulfilment"


class Counted(ProcessManager[dict[str, Any]]):
    """Keyed by a number, through a function of the decoded event."""

    name = "counted"
    key = "quantity"
    partitions = 3

    @on(StockReceived, start=True, key=lambda event: event.quantity * 10)
    async def received(self, event: StockReceived, ctx: ProcessContext[dict[str, Any]]) -> None:
        ctx.complete()


def test_a_key_that_is_not_a_str_field_decodes_the_event_once() -> None:
    manager = Counted()
    received = _record("StockReceived", "Stock-a", {"sku": "a", "quantity": 4})
    assert manager.partition_key(received) == "40"
    received.data["quantity"] = 5  # remembered by event id: not decoded again
    assert manager.partition_key(received) == "40"


class Shouted(Event):
    """An event whose key field a validator reshapes."""

    order_id: str

    @field_validator("order_id")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Loud(ProcessManager[dict[str, Any]]):
    name = "loud"
    key = "order_id"
    partitions = 2

    @on(Shouted, start=True)
    async def shouted(self, event: Shouted, ctx: ProcessContext[dict[str, Any]]) -> None:
        ctx.complete()


def test_a_key_field_a_validator_reshapes_is_read_from_the_decoded_event() -> None:
    record = _record("Shouted", "Shout-1", {"order_id": "o7"})
    assert Loud().partition_key(record) == "O7"  # the instance key, as handlers see it
    assert SplitFulfilment()._raw_keys["OrderPlaced"] == "order_id"  # plain: read as stored


def test_a_bad_partition_count_is_refused_at_definition() -> None:
    for bad in (0, -1, 2.5, True, "4"):
        broken = type("Broken", (Fulfilment,), {"partitions": bad})
        with pytest.raises(ProcessDefinitionError, match="partitions must be a whole number"):
            broken()


async def test_two_runners_handle_every_instance_once_across_streams(env: Env) -> None:
    """Stock events of one stream belong to many orders: each goes to its order's
    partition, so instances see their events in order although a stream is split."""
    await env.repository.create(Stock, "apple", lambda s: s.receive(1000))
    first, second = SplitFulfilment(), SplitFulfilment()
    a = Runner(env.store, [first], engine=env.engine, holder="a", **OPTIONS)
    b = Runner(env.store, [second], engine=env.engine, holder="b", **OPTIONS)
    keys = [f"o{n}" for n in range(24)]
    async with a, b:
        await _until(lambda: _split(env))
        for n, key in enumerate(keys):
            card = "ok" if n % 3 else "declined"
            await env.repository.create(Order, key, lambda o, c=card: o.place("apple", 1, 5, c))
        await _until(lambda: _all_done(first, env, keys))
        held = await _holdings(env)
    assert sorted(held) == ["a", "b"]
    statuses = await _statuses(first, env, keys)
    assert statuses == Counter({"completed": 16, "compensated": 8})
    events = await all_events(env.store)
    by_type = Counter(record.event_type for record in events)
    assert by_type["StockReserved"] == 24
    assert by_type["OrderConfirmed"] == 16 and by_type["OrderCancelled"] == 8
    assert by_type["StockReleased"] == 8
    assert by_type["PaymentRequested"] == 24
    for n, key in enumerate(keys):
        wanted = ["OrderPlaced", "OrderConfirmed" if n % 3 else "OrderCancelled"]
        assert await types_of(env.store, f"Order-{key}") == wanted


async def _split(env: Env) -> bool:
    held = await _holdings(env)
    return sorted(len(parts) for parts in held.values()) == [2, 2]


async def _all_done(manager: ProcessManager[Any], env: Env, keys: list[str]) -> bool:
    statuses = await _statuses(manager, env, keys)
    return statuses["completed"] + statuses["compensated"] == len(keys)


async def test_deadlines_fire_once_each_by_the_holder_of_their_partition(env: Env) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(1000))
    first, second = SplitFulfilment(), SplitFulfilment()
    a = Runner(env.store, [first], engine=env.engine, holder="a", **OPTIONS)
    b = Runner(env.store, [second], engine=env.engine, holder="b", **OPTIONS)
    keys = [f"p{n}" for n in range(30)]
    await a.start()
    await b.start()
    try:
        await _until(lambda: _split(env))
        for key in keys:  # "pending": the payment never comes, the deadline is due
            await env.repository.create(Order, key, lambda o: o.place("apple", 1, 5, "pending"))
        await _until(lambda: _scheduled(env, len(keys)))
        held = await _holdings(env)
        poll_a = DeadlinePoller(env.store, env.engine, [first], holder="a")
        poll_b = DeadlinePoller(env.store, env.engine, [second], holder="b")
        fired = await asyncio.gather(poll_a.fire_due(now=later()), poll_b.fire_due(now=later()))
        mine = {
            holder: sum(partition_of(key, COUNT) in parts for key in keys)
            for holder, parts in held.items()
        }
        assert fired == [mine["a"], mine["b"]]
        assert all(mine.values())
        assert await poll_a.fire_due(now=later()) == 0

        # b goes away: a takes its partitions, and with them the deadlines of new orders.
        more = [f"q{n}" for n in range(20)]
        await b.stop()
        await _until(lambda: _holds_all(env, "a"))
        for key in more:
            await env.repository.create(Order, key, lambda o: o.place("apple", 1, 5, "pending"))
        await _until(lambda: _scheduled(env, len(more)))
        assert await poll_b.fire_due(now=later()) == 0  # it holds nothing any more
        assert await poll_a.fire_due(now=later()) == len(more)
    finally:
        await a.stop()
        await b.stop()
    deadlines = await list_deadlines(env.engine, "fulfilment")
    assert len(deadlines) == len(keys) + len(more)
    assert {(d.status, d.attempts) for d in deadlines} == {("fired", 1)}
    released = Counter(
        r.data["order_id"] for r in await all_events(env.store) if r.event_type == "StockReleased"
    )
    assert released == Counter({key: 1 for key in [*keys, *more]})


async def _scheduled(env: Env, count: int) -> bool:
    return len(await list_deadlines(env.engine, "fulfilment", status="scheduled")) == count


async def _holds_all(env: Env, holder: str) -> bool:
    return await _holdings(env) == {holder: list(range(COUNT))}


async def test_a_poller_of_a_partitioned_manager_needs_the_runners_holder(env: Env) -> None:
    with pytest.raises(ValueError, match=r"fulfilment is partitioned.*holder=runner.holder"):
        DeadlinePoller(env.store, env.engine, [SplitFulfilment()])


async def test_another_partition_count_is_refused_for_a_process_manager(env: Env) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    await env.repository.create(Order, "o1", lambda o: o.place("apple", 1, 5, "pending"))
    async with Runner(env.store, [SplitFulfilment()], engine=env.engine, **OPTIONS) as runner:
        await _until(lambda: _scheduled(env, 1))
        assert await _holdings(env) == {runner.holder: [0, 1, 2, 3]}
    halved = type("Halved", (Fulfilment,), {"partitions": 2})
    with pytest.raises(PartitionsChanged, match=r"declares 2 partition.*stored with 4"):
        await Runner(env.store, [halved()], engine=env.engine).start()
    with pytest.raises(PartitionsChanged, match=r"declares 1 partition.*stored with 4"):
        await Runner(env.store, [Fulfilment()], engine=env.engine).start()


async def test_a_caught_up_manager_is_repartitioned_and_goes_on_where_it_stopped(
    env: Env,
) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(100))
    keys = [f"r{n}" for n in range(10)]
    halved = type("Halved", (Fulfilment,), {"partitions": 2})()
    async with Runner(env.store, [SplitFulfilment()], engine=env.engine, **OPTIONS) as runner:
        for key in keys:
            await env.repository.create(Order, key, lambda o: o.place("apple", 1, 5, "pending"))
        await settle(env.store, runner, lambda: _scheduled(env, len(keys)))
        with pytest.raises(ProjectionHeld, match="'fulfilment' is held by"):
            await repartition(env.store, env.engine, halved)
        holder = runner.holder
    with pytest.raises(PartitionsChanged, match=r"repartition fulfilment` to change the count"):
        await Runner(env.store, [halved], engine=env.engine).start()

    moved_to = await repartition(env.store, env.engine, halved)
    assert moved_to is not None
    assert await repartition(env.store, env.engine, halved) is None  # done already
    with pytest.raises(PartitionsChanged, match=r"declares 4 partition.*stored with 2"):
        await Runner(env.store, [SplitFulfilment()], engine=env.engine).start()
    more = [f"s{n}" for n in range(6)]
    async with Runner(env.store, [halved], engine=env.engine, holder=holder, **OPTIONS):
        for key in more:
            await env.repository.create(Order, key, lambda o: o.place("apple", 1, 5, "pending"))
        await _until(lambda: _scheduled(env, len(keys) + len(more)))
        # The instances handled with four partitions go on with two: their deadlines fire
        # where their key's partition (of two) is held.
        poller = DeadlinePoller(env.store, env.engine, [halved], holder=holder)
        assert await poller.fire_due(now=later()) == len(keys) + len(more)
    released = Counter(
        r.data["order_id"] for r in await all_events(env.store) if r.event_type == "StockReserved"
    )
    assert released == Counter({key: 1 for key in [*keys, *more]})  # nothing handled twice


async def test_repartition_refuses_while_a_partition_is_behind(env: Env) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(100))
    manager = SplitFulfilment()
    async with Runner(env.store, [manager], engine=env.engine, **OPTIONS) as runner:
        await env.repository.create(Order, "t0", lambda o: o.place("apple", 1, 5, "pending"))
        await settle(env.store, runner, lambda: _scheduled(env, 1))
    # More orders, and only one partition (the one of order t1) deals with them.
    for key in ("t1", "t2", "t3", "t4", "t5", "t6"):
        await env.repository.create(Order, key, lambda o: o.place("apple", 1, 5, "pending"))
    home = next(p for p in partitions_of(manager) if partition_of("t1", COUNT) == p.index)
    lagging = {partition_of(key, COUNT) for key in ("t2", "t3", "t4", "t5", "t6")} - {home.index}
    assert lagging  # some order lies in another partition
    subscription = Subscription(
        env.store,
        Database(env.engine),
        manager,
        name=f"fulfilment/{home.index}",
        partition=home,
    )
    await subscription.setup()
    while await subscription.step() or subscription.more:
        pass
    with pytest.raises(RepartitionRefused, match=r"fulfilment/\d has not dealt with its events"):
        await repartition(env.store, env.engine, Fulfilment())
    async with Runner(env.store, [manager], engine=env.engine, **OPTIONS) as runner:
        await settle(env.store, runner, lambda: _scheduled(env, 7))
    assert await repartition(env.store, env.engine, Fulfilment()) is not None


class Meeting(ProcessManager[dict[str, Any]]):
    """Its handler waits (at most 5 s) until the handler of another partition runs too."""

    name = "meeting"
    key = "sku"
    partitions = 2

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.met = asyncio.Event()

    @on(StockReceived, start=True)
    async def received(self, event: StockReceived, ctx: ProcessContext[dict[str, Any]]) -> None:
        self.inside += 1
        if self.inside == 2:
            self.met.set()
        try:
            await asyncio.wait_for(self.met.wait(), 5)
        finally:
            self.inside -= 1
        ctx.complete()


async def test_the_partitions_of_a_manager_run_side_by_side_in_one_process(env: Env) -> None:
    first = "apple"
    second = next(
        f"sku{n}" for n in range(100) if partition_of(f"sku{n}", 2) != partition_of(first, 2)
    )
    manager = Meeting()
    async with Runner(env.store, [manager], engine=env.engine, **OPTIONS) as runner:
        await env.repository.create(Stock, first, lambda s: s.receive(1))
        await env.repository.create(Stock, second, lambda s: s.receive(1))
        await settle(env.store, runner, lambda: _both_done(manager, env, first, second))
    assert manager.met.is_set()


async def _both_done(manager: Meeting, env: Env, *keys: str) -> bool:
    return (await _statuses(manager, env, list(keys)))["completed"] == len(keys)


async def test_a_firing_checks_the_lease_in_its_own_transaction(env: Env) -> None:
    """Even asked directly (as a poller that read the leases a moment too early would),
    a runner that does not hold the instance's partition does not fire its deadline."""
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    manager = SplitFulfilment()
    async with Runner(env.store, [manager], engine=env.engine, holder="a", **OPTIONS) as runner:
        await env.repository.create(Order, "o1", lambda o: o.place("apple", 1, 5, "pending"))
        await settle(env.store, runner, lambda: _scheduled(env, 1))
        [deadline] = await list_deadlines(env.engine, "fulfilment")
        db = Database(env.engine)
        assert not await manager.fire_deadline(db, env.store, deadline.id, "o1", holder="b")
        assert await _scheduled(env, 1)
        assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
        assert await manager.fire_deadline(db, env.store, deadline.id, "o1", holder="a")
    [fired] = await list_deadlines(env.engine, "fulfilment")
    assert (fired.status, fired.attempts) == ("fired", 1)
    assert await types_of(env.store, "Stock-apple") == [
        "StockReceived",
        "StockReserved",
        "StockReleased",
    ]
