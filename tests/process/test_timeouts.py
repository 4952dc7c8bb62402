"""Durable timeouts: they survive restarts, fire once in effect, and never when cancelled."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from saga_support import (
    Env,
    Fulfilment,
    Order,
    Stock,
    instance_is,
    later,
    settle,
    types_of,
)

from eventfold.processes.deadlines import DeadlinePoller, list_deadlines
from eventfold.projections import Runner


async def prepare_order(env: Env, order_id: str, card: str) -> None:
    await env.repository.create(Order, order_id, lambda o: o.place("apple", 2, 30, card))


async def test_a_timeout_fires_after_a_runner_restart(env: Env) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    # The first runner handles the order and schedules the payment timeout, then stops.
    first = Fulfilment()
    async with Runner(env.store, [first], engine=env.engine) as runner:
        await prepare_order(env, "o1", card="pending")
        await settle(env.store, runner, instance_is(first, env.engine, "o1"))
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert deadline.status == "scheduled"
    placed = (await env.store.read_stream("Order-o1"))[0]
    assert deadline.due_at == placed.recorded_at + timedelta(minutes=30)

    # A new process: new manager, runner and poller. Nothing is due yet...
    manager = Fulfilment()
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        poller = DeadlinePoller(env.store, env.engine, [manager])
        assert await poller.fire_due(now=placed.recorded_at + timedelta(minutes=29)) == 0
        # ...half an hour later it is, and fires once.
        assert await poller.fire_due(now=later()) == 1
        assert await poller.fire_due(now=later(2)) == 0
        await settle(env.store, runner)

    assert await types_of(env.store, "Stock-apple") == [
        "StockReceived", "StockReserved", "StockReleased",
    ]
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]
    (fired,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert fired.status == "fired"
    assert fired.attempts == 1
    instance = await manager.instance(env.engine, "o1")
    assert instance is not None
    assert (instance.status, instance.reason) == ("compensated", "payment overdue")
    # The timeout's commands are caused by the event that scheduled it.
    released = (await env.store.read_stream("Stock-apple"))[-1]
    assert released.metadata["causation_id"] == str(placed.event_id)
    assert released.metadata["correlation_id"] == str(placed.event_id)


async def test_a_cancelled_deadline_never_fires(env: Env) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await prepare_order(env, "o1", card="ok")  # paid: the saga cancels the timeout
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))
        poller = DeadlinePoller(env.store, env.engine, [manager])
        assert await poller.fire_due(now=later(24)) == 0
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert deadline.status == "cancelled"
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderConfirmed"]


async def test_a_firing_that_crashes_after_its_commands_appends_nothing_twice(env: Env) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await prepare_order(env, "o1", card="pending")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1"))

    class Crash(Exception):
        pass

    class CrashingAfterCommands(Fulfilment):
        """Crashes after sending the compensations, before the firing commits."""

        async def overdue(self, message, ctx):  # type: ignore[no-untyped-def]
            await super().overdue(message, ctx)
            raise Crash("power cut")

    crashing = CrashingAfterCommands()
    poller = DeadlinePoller(env.store, env.engine, [crashing], retry_backoff=0)
    assert await poller.fire_due(now=later()) == 0
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert (deadline.status, deadline.attempts) == ("scheduled", 1)
    assert deadline.last_error == "Crash: power cut"
    # The compensations were appended once already...
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]

    # ...and firing it again (a restarted process) does not append them again, although
    # the order is cancelled and the stock released by now.
    poller = DeadlinePoller(env.store, env.engine, [manager])
    assert await poller.fire_due(now=later()) == 1
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]
    assert await types_of(env.store, "Stock-apple") == [
        "StockReceived", "StockReserved", "StockReleased",
    ]
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert deadline.status == "fired"


async def test_two_pollers_fire_each_deadline_once(env: Env) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(50))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        for n in range(6):
            await prepare_order(env, f"o{n}", card="pending")
        await settle(env.store, runner, instance_is(manager, env.engine, "o5"))
    # Two processes' pollers: each with its own manager instance (no shared lock).
    first = DeadlinePoller(env.store, env.engine, [Fulfilment()])
    second = DeadlinePoller(env.store, env.engine, [Fulfilment()])
    fired = await asyncio.gather(first.fire_due(now=later()), second.fire_due(now=later()))
    assert sum(fired) == 6
    stock = await types_of(env.store, "Stock-apple")
    assert stock.count("StockReleased") == 6
    for n in range(6):
        assert await types_of(env.store, f"Order-o{n}") == ["OrderPlaced", "OrderCancelled"]


async def test_the_poller_fires_on_its_schedule(env: Env) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await prepare_order(env, "o1", card="pending")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1"))
        fired = asyncio.Event()

        class Clock:
            def __call__(self):  # type: ignore[no-untyped-def]
                return later()

        poller = DeadlinePoller(env.store, env.engine, [manager], interval=0.05, clock=Clock())
        original = poller.fire_due

        async def fire_due(now=None):  # type: ignore[no-untyped-def]
            count = await original(now)
            if count:
                fired.set()
            return count

        poller.fire_due = fire_due  # type: ignore[method-assign]
        async with poller:
            await asyncio.wait_for(fired.wait(), 10)
        await settle(env.store, runner)
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]


def test_deadline_ids_are_stable() -> None:
    from eventfold.processes.deadlines import deadline_id

    cause = uuid.uuid4()
    assert deadline_id("m", "k", "n", cause, 0) == deadline_id("m", "k", "n", cause, 0)
    assert deadline_id("m", "k", "n", cause, 0) != deadline_id("m", "k", "n", cause, 1)

