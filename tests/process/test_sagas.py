"""Process managers: a saga that completes, one that compensates, causation of commands."""

from __future__ import annotations

from dataclasses import replace

from saga_support import (
    EVENTS,
    Env,
    Fulfilment,
    Order,
    Payment,
    Stock,
    all_events,
    instance_is,
    settle,
    types_of,
)

from eventfold.aggregates import Repository
from eventfold.app import App
from eventfold.eventstore.causation import correlated
from eventfold.processes.deadlines import list_deadlines
from eventfold.projections import Runner
from eventfold.snapshots import MemorySnapshotStore


async def stock_of(env: Env, sku: str, quantity: int) -> None:
    await env.repository.create(Stock, sku, lambda stock: stock.receive(quantity))


async def place(env: Env, order_id: str, *, quantity: int = 2, card: str = "ok") -> None:
    await env.repository.create(
        Order, order_id, lambda order: order.place("apple", quantity, 30, card)
    )


async def test_a_saga_that_completes(env: Env) -> None:
    manager = Fulfilment()
    await stock_of(env, "apple", 5)
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await place(env, "o1")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))

    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderConfirmed"]
    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    assert await types_of(env.store, "Payment-o1") == ["PaymentRequested", "PaymentCharged"]
    instance = await manager.instance(env.engine, "o1")
    assert instance is not None
    assert instance.status == "completed"
    assert instance.state.sku == "apple"
    # Completing cancelled the payment timeout.
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert deadline.status == "cancelled"


async def test_a_saga_that_compensates_when_a_failure_event_arrives(env: Env) -> None:
    manager = Fulfilment()
    await stock_of(env, "apple", 5)
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await place(env, "o1", card="declined")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "compensated"))

    assert await types_of(env.store, "Payment-o1") == ["PaymentRequested", "PaymentFailed"]
    assert await types_of(env.store, "Stock-apple") == [
        "StockReceived", "StockReserved", "StockReleased",
    ]
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]
    # Undone in reverse order: the stock (reserved last) first, then the order.
    log = [r for r in await all_events(env.store) if r.event_type in {"StockReleased",
                                                                       "OrderCancelled"}]
    assert [r.event_type for r in log] == ["StockReleased", "OrderCancelled"]
    assert log[1].data["reason"] == "payment failed: card declined"
    instance = await manager.instance(env.engine, "o1")
    assert instance is not None
    assert instance.status == "compensated"
    assert instance.reason == "payment failed: card declined"
    assert instance.steps == ()
    assert instance.state.log == ["release_stock", "cancel_order"]
    (deadline,) = await list_deadlines(env.engine, "fulfilment", key="o1")
    assert deadline.status == "cancelled"


async def test_a_refused_command_compensates_the_earlier_steps(env: Env) -> None:
    manager = Fulfilment()
    await stock_of(env, "apple", 1)
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await place(env, "o1", quantity=3)  # more than there is: OutOfStock
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "compensated"))

    assert await types_of(env.store, "Stock-apple") == ["StockReceived"]
    assert await types_of(env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]
    instance = await manager.instance(env.engine, "o1")
    assert instance is not None
    assert instance.status == "compensated"
    assert instance.reason is not None and instance.reason.startswith("OutOfStock: 3 of apple")
    # The reservation never happened, so only the order was undone.
    assert instance.state.log == ["cancel_order"]


async def test_events_appended_by_commands_are_caused_by_the_handled_event(env: Env) -> None:
    manager = Fulfilment()
    await stock_of(env, "apple", 5)
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        with correlated("request-7"):
            await place(env, "o1")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))

    records = {r.event_type: r for r in await all_events(env.store)}
    placed, reserved = records["OrderPlaced"], records["StockReserved"]
    requested, confirmed = records["PaymentRequested"], records["OrderConfirmed"]
    assert reserved.metadata["causation_id"] == str(placed.event_id)
    assert requested.metadata["causation_id"] == str(reserved.event_id)
    assert records["PaymentCharged"].metadata["causation_id"] == str(reserved.event_id)
    assert confirmed.metadata["causation_id"] == str(records["PaymentCharged"].event_id)
    for record in (placed, reserved, requested, confirmed):
        assert record.metadata["correlation_id"] == "request-7"
    assert "causation_id" not in records["StockReceived"].metadata


async def test_events_for_unknown_or_finished_instances_are_ignored(env: Env) -> None:
    manager = Fulfilment()
    await stock_of(env, "apple", 5)
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        # A payment for an order the saga never saw: no starting event, no instance.
        from saga_support import Payment

        await env.repository.create(Payment, "stray", lambda p: p.charge(5, "ok"))
        await place(env, "o1")
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))
    assert await manager.instance(env.engine, "stray") is None
    assert await types_of(env.store, "Order-stray") == []


async def test_commands_load_aggregates_through_the_repository_from_snapshots(env: Env) -> None:
    # The snapshot says 50 apples where the events say 5: an order of 20 goes through only
    # if the saga's command loads Stock from the snapshot, as Repository.get does.
    await stock_of(env, "apple", 5)
    taken = await env.repository.capture_snapshot(Stock, "apple")
    snapshots = MemorySnapshotStore()
    await snapshots.save(replace(taken, state={**taken.state, "available": 50}))
    manager = Fulfilment()
    manager.use_repository(Repository(env.store, snapshots=snapshots))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await place(env, "o1", quantity=20)
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))

    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    stock = await Repository(env.store, snapshots=snapshots).get(Stock, "apple")
    assert stock.available == 30


async def test_an_apps_process_managers_load_through_its_repository(env: Env) -> None:
    # Same doctored snapshot, in the App's own snapshot store: connecting the App hands
    # the saga the App's repository.
    manager = Fulfilment()
    app = App(events=EVENTS, aggregates=[Order, Stock, Payment], subscribers=[manager])
    async with app.connect(env.url) as running:
        await stock_of(env, "apple", 5)
        taken = await running.repository.capture_snapshot(Stock, "apple")
        await running.snapshots.save(replace(taken, state={**taken.state, "available": 50}))
        async with running.runner() as runner:
            await place(env, "o1", quantity=20)
            await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))

    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
