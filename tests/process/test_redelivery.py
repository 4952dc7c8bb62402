"""Redelivery: a batch rolled back after its commands were appended (a crash before the
checkpoint committed) is handled again without appending anything twice."""

from __future__ import annotations

import pytest
from saga_support import Env, Fulfilment, Order, Stock, instance_is, settle, types_of

from eventfold.eventstore import START, RecordedEvent
from eventfold.projections import Runner, Subscription
from eventfold.projections.database import Database


async def visible_log(env: Env, count: int) -> list[RecordedEvent]:
    """The log once ``count`` events are visible (PostgreSQL readers wait for the horizon:
    another session's open transaction may hold it back a moment)."""
    while True:
        records = await env.store.read_all(after=START)
        if len(records) >= count:
            return records
        await env.store.wait_for_events(records[-1].global_position if records else START, 1.0)


class Crash(Exception):
    """The process dies between the commands and the commit."""


async def test_a_redelivered_event_issues_no_duplicate_commands(env: Env) -> None:
    # Exactly the stock the order wants: reserving it again would be refused (OutOfStock)
    # and, wrongly, compensate the order.
    await env.repository.create(Stock, "apple", lambda s: s.receive(2))
    await env.repository.create(Order, "o1", lambda o: o.place("apple", 2, 30, "ok"))

    manager = Fulfilment()
    db = Database(env.engine)
    subscription = Subscription(env.store, db, manager)
    await subscription.setup()
    records = await visible_log(env, 2)
    # The runner's step, dying after handle_batch and before the commit.
    with pytest.raises(Crash):
        async with (
            manager.around_batch(records, env.store, env.engine),
            db.transaction() as conn,
        ):
            await subscription.apply(conn, records)
            raise Crash
    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    assert await manager.instance(env.engine, "o1") is None  # rolled back with the batch

    # A restarted runner gets the OrderPlaced again.
    restarted = Fulfilment()
    async with Runner(env.store, [restarted], engine=env.engine) as runner:
        await settle(env.store, runner, instance_is(restarted, env.engine, "o1", "completed"))

    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    assert await types_of(env.store, "Payment-o1") == ["PaymentRequested", "PaymentCharged"]
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderConfirmed"]
    instance = await restarted.instance(env.engine, "o1")
    assert instance is not None
    assert instance.status == "completed"


async def test_a_batch_redone_event_by_event_issues_no_duplicate_commands(env: Env) -> None:
    """A later event of the batch fails once: the batch is redone one event at a time, and
    the events before it, whose commands went out already, are not re-sent."""
    await env.repository.create(Stock, "apple", lambda s: s.receive(2))

    class FlakyOnConfirm(Fulfilment):
        failures = 0

        async def charged(self, event, ctx):  # type: ignore[no-untyped-def]
            if FlakyOnConfirm.failures == 0:
                FlakyOnConfirm.failures += 1
                raise RuntimeError("flaky")
            await super().charged(event, ctx)

    manager = FlakyOnConfirm()
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await env.repository.create(Order, "o1", lambda o: o.place("apple", 2, 30, "ok"))
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))

    assert FlakyOnConfirm.failures == 1
    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderConfirmed"]
