"""A step's commands landing together: ``async with ctx.together() as unit`` appends every
command's events in one transaction or none, is not appended twice after a crash, and
re-decides every command when another writer moved one of the aggregates on.

On memory, SQLite and PostgreSQL (the crash needs a durable database: SQLite, PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from saga_support import (
    Env,
    FulfilmentState,
    OrderPlaced,
    Payment,
    PaymentOverdue,
    Stock,
    all_events,
    instance_is,
    later,
    settle,
    types_of,
)
from saga_support import Order as PlacedOrder
from test_redelivery import Crash, visible_log

from eventfold.aggregates import Repository
from eventfold.processes import DeadlinePoller, ProcessDefinitionError
from eventfold.processes.process_manager import (
    ProcessContext,
    ProcessManager,
    Step,
    compensation,
    on,
    on_timeout,
)
from eventfold.projections import Runner, Subscription
from eventfold.projections.database import Database


class Checkout(ProcessManager[FulfilmentState]):
    """Requests the payment and reserves the stock as one step: both land, or neither."""

    name = "checkout"
    key = "order_id"
    state_type = FulfilmentState

    def __init__(self, meddle: Callable[[int], Awaitable[None]] | None = None) -> None:
        super().__init__()
        self.decided: list[str] = []
        self.meddle = meddle

    @on(OrderPlaced, start=True)
    async def placed(self, event: OrderPlaced, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.add_step(undo=self.cancel_order)

        async def request(payment: Payment) -> None:
            self.decided.append(f"payment at v{payment.version}")
            if self.meddle is not None:
                await self.meddle(len(self.decided))
            payment.charge(event.amount, "pending")

        def reserve(stock: Stock) -> None:
            self.decided.append(f"stock at v{stock.version}")
            stock.reserve(event.order_id, event.quantity)

        async with ctx.together() as unit:
            # The payment first: a refused reservation must take it back too.
            unit.send(Payment, event.order_id, request)
            unit.send(Stock, event.sku, reserve, undo=self.release_stock,
                      data={"sku": event.sku})
        ctx.state.log.append(f"sent {len(unit.results)}")

    @compensation
    async def release_stock(self, step: Step, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.state.log.append("release_stock")
        await ctx.send(Stock, step.data["sku"], lambda stock: stock.release(ctx.key))

    @compensation
    async def cancel_order(self, step: Step, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.state.log.append("cancel_order")
        reason = ctx.reason or "compensated"
        await ctx.send(PlacedOrder, ctx.key, lambda order: order.cancel(reason))


async def place(env: Env, stock: int, quantity: int) -> None:
    await env.repository.create(Stock, "apple", lambda s: s.receive(stock))
    await env.repository.create(PlacedOrder, "o1", lambda o: o.place("apple", quantity, 30))


async def run_until(env: Env, manager: Checkout, *statuses: str) -> None:
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", *statuses))


async def test_both_commands_land_in_one_transaction(any_env: Env) -> None:
    await place(any_env, stock=5, quantity=2)
    manager = Checkout()
    await run_until(any_env, manager, "active")

    records = await all_events(any_env.store)
    landed = [r for r in records if r.stream_id in ("Payment-o1", "Stock-apple")
              and r.event_type != "StockReceived"]
    assert [(r.stream_id, r.event_type) for r in landed] == [
        ("Payment-o1", "PaymentRequested"), ("Stock-apple", "StockReserved"),
    ]
    assert landed[1].global_position.position == landed[0].global_position.position + 1
    placed = next(r for r in records if r.event_type == "OrderPlaced")
    for record in landed:  # caused by the handled event, in its correlation
        assert record.metadata["causation_id"] == str(placed.event_id)
        assert record.metadata["correlation_id"] == placed.metadata.get(
            "correlation_id", str(placed.event_id)
        )
    instance = await manager.instance(any_env.engine, "o1")
    assert instance is not None
    assert [step.undo for step in instance.steps] == ["cancel_order", "release_stock"]


async def test_a_refused_second_command_writes_neither_and_compensates(any_env: Env) -> None:
    await place(any_env, stock=1, quantity=2)
    manager = Checkout()
    await run_until(any_env, manager, "compensated")

    assert await types_of(any_env.store, "Payment-o1") == []
    assert await types_of(any_env.store, "Stock-apple") == ["StockReceived"]
    assert await types_of(any_env.store, "Order-o1") == ["OrderPlaced", "OrderCancelled"]
    instance = await manager.instance(any_env.engine, "o1")
    assert instance is not None
    # Only the step taken before the unit was undone: the unit recorded none.
    assert instance.state.log == ["cancel_order"]
    assert instance.reason == "OutOfStock: 2 of apple wanted, 1 available"


async def test_a_concurrent_writer_to_one_aggregate_re_decides_both(any_env: Env) -> None:
    await place(any_env, stock=5, quantity=2)
    other = Repository(any_env.store)

    async def meddle(decisions: int) -> None:
        if decisions == 1:  # after the unit loaded both: stock arrives meanwhile
            await other.update(Stock, "apple", lambda s: s.receive(1))

    manager = Checkout(meddle)
    await run_until(any_env, manager, "active")

    assert manager.decided == [
        "payment at v0", "stock at v1", "payment at v0", "stock at v2",
    ]
    assert await types_of(any_env.store, "Payment-o1") == ["PaymentRequested"]
    assert await types_of(any_env.store, "Stock-apple") == [
        "StockReceived", "StockReceived", "StockReserved",
    ]


async def test_a_crash_before_the_checkpoint_does_not_append_the_unit_twice(env: Env) -> None:
    # Exactly the stock wanted: deciding the unit again would be refused, and wrongly
    # compensate the order; the one id lookup must find it appended.
    await place(env, stock=2, quantity=2)
    manager = Checkout()
    db = Database(env.engine)
    subscription = Subscription(env.store, db, manager)
    await subscription.setup()
    records = await visible_log(env, 2)
    with pytest.raises(Crash):
        async with (
            manager.around_batch(records, env.store, env.engine),
            db.transaction() as conn,
        ):
            await subscription.apply(conn, records)
            raise Crash
    assert await types_of(env.store, "Payment-o1") == ["PaymentRequested"]
    assert await manager.instance(env.engine, "o1") is None  # rolled back with the batch

    restarted = Checkout()
    await run_until(env, restarted, "active")

    assert restarted.decided == []  # found appended: not decided again
    assert await types_of(env.store, "Payment-o1") == ["PaymentRequested"]
    assert await types_of(env.store, "Stock-apple") == ["StockReceived", "StockReserved"]
    instance = await restarted.instance(env.engine, "o1")
    assert instance is not None
    assert [step.undo for step in instance.steps] == ["cancel_order", "release_stock"]


async def test_sending_beside_the_unit_or_twice_to_one_aggregate_is_refused(
    any_env: Env,
) -> None:
    await place(any_env, stock=5, quantity=1)
    raised: list[str] = []

    class Misused(Checkout):
        name = "misused"

        @on(OrderPlaced, start=True)
        async def placed(self, event: OrderPlaced, ctx: ProcessContext[FulfilmentState]) -> None:
            for attempt in (self.beside, self.twice, self.nested):
                try:
                    await attempt(ctx)
                except ProcessDefinitionError as error:
                    raised.append(str(error).split(":")[0])
            ctx.complete()

        async def beside(self, ctx: ProcessContext[FulfilmentState]) -> None:
            async with ctx.together():
                await ctx.send(Stock, "apple", lambda s: s.reserve("o1", 1))

        async def twice(self, ctx: ProcessContext[FulfilmentState]) -> None:
            async with ctx.together() as unit:
                unit.send(Stock, "apple", lambda s: s.reserve("o1", 1))
                unit.send(Stock, "apple", lambda s: s.reserve("o1", 1))

        async def nested(self, ctx: ProcessContext[FulfilmentState]) -> None:
            async with ctx.together(), ctx.together():
                pass

    manager = Misused()
    await run_until(any_env, manager, "completed")
    assert raised == [
        "ctx.send inside a ctx.together() block would not land with the unit",
        "Stock-apple is sent two commands in one unit of work",
        "ctx.together() blocks do not nest",
    ]
    assert await types_of(any_env.store, "Stock-apple") == ["StockReceived"]


class GiveUp(Checkout):
    """On the payment timeout, releases the stock and cancels the order together: a unit
    sent from a timeout handler."""

    name = "give-up"

    @on(OrderPlaced, start=True)
    async def placed(self, event: OrderPlaced, ctx: ProcessContext[FulfilmentState]) -> None:
        await super().placed(event, ctx)
        ctx.schedule(PaymentOverdue(order_id=event.order_id), after=timedelta(minutes=30))

    @on_timeout(PaymentOverdue)
    async def overdue(self, message: PaymentOverdue, ctx: ProcessContext[FulfilmentState]) -> None:
        async with ctx.together() as unit:
            unit.send(Stock, "apple", lambda stock: stock.release(ctx.key))
            unit.send(PlacedOrder, ctx.key, lambda order: order.cancel("payment overdue"))
        ctx.complete()


async def test_a_unit_sent_from_a_timeout_is_caused_by_the_event_that_scheduled_it(
    any_env: Env,
) -> None:
    await place(any_env, stock=5, quantity=2)
    manager = GiveUp()
    async with Runner(any_env.store, [manager], engine=any_env.engine) as runner:
        await settle(any_env.store, runner, instance_is(manager, any_env.engine, "o1"))
        poller = DeadlinePoller(any_env.store, any_env.engine, [manager])
        assert await poller.fire_due(now=later()) == 1
        await settle(any_env.store, runner,
                     instance_is(manager, any_env.engine, "o1", "completed"))

    records = await all_events(any_env.store)
    placed = next(r for r in records if r.event_type == "OrderPlaced")
    undone = [r for r in records if r.event_type in ("StockReleased", "OrderCancelled")]
    assert [(r.stream_id, r.event_type) for r in undone] == [
        ("Order-o1", "OrderCancelled"), ("Stock-apple", "StockReleased"),
    ]
    assert {r.global_position.transaction_id for r in undone} == {
        undone[0].global_position.transaction_id
    }
    for record in undone:
        assert record.metadata["causation_id"] == str(placed.event_id)
