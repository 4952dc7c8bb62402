"""A small order workflow for the process-manager tests: three aggregates and a saga.

The order is placed by the customer; the ``Fulfilment`` saga reserves stock, charges the
payment, and confirms the order - or, when the payment fails, is refused, or does not
happen within 30 minutes, releases the stock and cancels the order, in that order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.aggregates import Aggregate, DomainError, Repository, applies
from eventfold.eventstore import Event, EventRegistry, EventStore, RecordedEvent
from eventfold.processes.process_manager import (
    ProcessContext,
    ProcessManager,
    Step,
    compensation,
    on,
    on_timeout,
)
from eventfold.projections import Runner

# --- events ---------------------------------------------------------------------------------


class OrderPlaced(Event):
    order_id: str
    sku: str
    quantity: int
    amount: int
    card: str = "ok"


class OrderConfirmed(Event):
    order_id: str


class OrderCancelled(Event):
    order_id: str
    reason: str


class StockReceived(Event):
    sku: str
    quantity: int


class StockReserved(Event):
    order_id: str
    sku: str
    quantity: int


class StockReleased(Event):
    order_id: str
    sku: str
    quantity: int


class PaymentRequested(Event):
    order_id: str
    amount: int


class PaymentCharged(Event):
    order_id: str
    amount: int


class PaymentFailed(Event):
    order_id: str
    reason: str


EVENTS: list[type[Event]] = [
    OrderPlaced, OrderConfirmed, OrderCancelled, StockReceived, StockReserved, StockReleased,
    PaymentRequested, PaymentCharged, PaymentFailed,
]


def make_registry() -> EventRegistry:
    """The registry of the saga tests."""
    return EventRegistry(EVENTS)


# --- aggregates -----------------------------------------------------------------------------


class OutOfStock(DomainError):
    """Not enough stock to reserve."""


class Order(Aggregate):
    status: str = "new"

    def place(self, sku: str, quantity: int, amount: int, card: str = "ok") -> None:
        self.record(OrderPlaced(order_id=self.id, sku=sku, quantity=quantity, amount=amount,
                                card=card))

    def confirm(self) -> None:
        if self.status == "placed":
            self.record(OrderConfirmed(order_id=self.id))

    def cancel(self, reason: str) -> None:
        if self.status == "placed":
            self.record(OrderCancelled(order_id=self.id, reason=reason))

    @applies(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.status = "placed"

    @applies(OrderConfirmed)
    def _confirmed(self, event: OrderConfirmed) -> None:
        self.status = "confirmed"

    @applies(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = "cancelled"


class Stock(Aggregate):
    available: int = 0
    reserved: dict[str, int] = {}  # noqa: RUF012 - the Aggregate copies defaults

    def receive(self, quantity: int) -> None:
        self.record(StockReceived(sku=self.id, quantity=quantity))

    def reserve(self, order_id: str, quantity: int) -> None:
        if quantity > self.available:
            raise OutOfStock(f"{quantity} of {self.id} wanted, {self.available} available")
        self.record(StockReserved(order_id=order_id, sku=self.id, quantity=quantity))

    def release(self, order_id: str) -> None:
        quantity = self.reserved.get(order_id)
        if quantity:
            self.record(StockReleased(order_id=order_id, sku=self.id, quantity=quantity))

    @applies(StockReceived)
    def _received(self, event: StockReceived) -> None:
        self.available += event.quantity

    @applies(StockReserved)
    def _reserved(self, event: StockReserved) -> None:
        self.available -= event.quantity
        self.reserved[event.order_id] = event.quantity

    @applies(StockReleased)
    def _released(self, event: StockReleased) -> None:
        self.available += event.quantity
        del self.reserved[event.order_id]


class Payment(Aggregate):
    status: str = "none"

    def charge(self, amount: int, card: str) -> None:
        """``card`` "ok" pays, "declined" fails, "pending" waits (for a 3-D Secure check)."""
        self.record(PaymentRequested(order_id=self.id, amount=amount))
        if card == "ok":
            self.record(PaymentCharged(order_id=self.id, amount=amount))
        elif card == "declined":
            self.record(PaymentFailed(order_id=self.id, reason="card declined"))

    @applies(PaymentRequested)
    def _requested(self, event: PaymentRequested) -> None:
        self.status = "requested"

    @applies(PaymentCharged)
    def _charged(self, event: PaymentCharged) -> None:
        self.status = "charged"

    @applies(PaymentFailed)
    def _failed(self, event: PaymentFailed) -> None:
        self.status = "failed"


# --- the saga ---------------------------------------------------------------------------------


class PaymentOverdue(BaseModel):
    order_id: str


class FulfilmentState(BaseModel):
    sku: str = ""
    quantity: int = 0
    amount: int = 0
    card: str = "ok"
    log: list[str] = []


class Fulfilment(ProcessManager[FulfilmentState]):
    name = "fulfilment"
    key = "order_id"
    state_type = FulfilmentState

    @on(OrderPlaced, start=True)
    async def placed(self, event: OrderPlaced, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.state.sku, ctx.state.quantity = event.sku, event.quantity
        ctx.state.amount, ctx.state.card = event.amount, event.card
        ctx.add_step(undo=self.cancel_order)
        await ctx.send(
            Stock, event.sku, lambda stock: stock.reserve(event.order_id, event.quantity),
            undo=self.release_stock, data={"sku": event.sku},
        )
        ctx.schedule(PaymentOverdue(order_id=event.order_id), after=timedelta(minutes=30))

    @on(StockReserved)
    async def reserved(self, event: StockReserved, ctx: ProcessContext[FulfilmentState]) -> None:
        state = ctx.state
        await ctx.send(Payment, ctx.key, lambda payment: payment.charge(state.amount, state.card))

    @on(PaymentCharged)
    async def charged(self, event: PaymentCharged, ctx: ProcessContext[FulfilmentState]) -> None:
        await ctx.send(Order, ctx.key, lambda order: order.confirm())
        ctx.cancel(PaymentOverdue)
        ctx.complete()

    @on(PaymentFailed)
    async def failed(self, event: PaymentFailed, ctx: ProcessContext[FulfilmentState]) -> None:
        await ctx.compensate(f"payment failed: {event.reason}")

    @on_timeout(PaymentOverdue)
    async def overdue(self, message: PaymentOverdue, ctx: ProcessContext[FulfilmentState]) -> None:
        await ctx.compensate("payment overdue")

    @compensation
    async def release_stock(self, step: Step, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.state.log.append("release_stock")
        await ctx.send(Stock, step.data["sku"], lambda stock: stock.release(ctx.key))

    @compensation
    async def cancel_order(self, step: Step, ctx: ProcessContext[FulfilmentState]) -> None:
        ctx.state.log.append("cancel_order")
        reason = ctx.reason or "compensated"
        await ctx.send(Order, ctx.key, lambda order: order.cancel(reason))


# --- helpers ------------------------------------------------------------------------------------


@dataclass
class Env:
    """One backend: the store, the engine on its database, and a repository."""

    kind: str
    url: str
    store: EventStore
    engine: AsyncEngine

    @property
    def repository(self) -> Repository:
        return Repository(self.store)


async def settle(
    store: EventStore,
    runner: Runner,
    until: Callable[[], Awaitable[bool]] | None = None,
    timeout: float = 10.0,
) -> None:
    """Wait until the runner processed the log, nothing more was appended meanwhile (the
    saga's commands append while it handles events) and ``until`` holds.

    ``until`` matters on PostgreSQL: an event appended a moment ago may not be visible yet
    (another session's open transaction holds the horizon back), so "caught up with the
    visible head" alone can be true too early."""
    async with asyncio.timeout(timeout):
        while True:
            head = await store.committed_head()
            await runner.wait_until(head, timeout=timeout)
            if await store.committed_head() == head and (until is None or await until()):
                return
            await store.wait_for_events(head, 0.2)


def instance_is(
    manager: ProcessManager[Any], engine: AsyncEngine, key: str, *statuses: str
) -> Callable[[], Awaitable[bool]]:
    """A condition for ``settle``: the instance exists (with one of ``statuses``)."""

    async def check() -> bool:
        instance = await manager.instance(engine, key)
        return instance is not None and (not statuses or instance.status in statuses)

    return check


async def types_of(store: EventStore, stream_id: str) -> list[str]:
    """The event types of a stream, in order."""
    return [record.event_type for record in await store.read_stream(stream_id)]


async def all_events(store: EventStore) -> list[RecordedEvent]:
    """The whole log."""
    return await store.read_all(limit=100_000)


async def drop_process_rows(engine: AsyncEngine) -> None:
    """Empty the process-manager tables (a SQLite file shared by nothing else needs not)."""
    from eventfold.eventstore.schema import deadlines, process_states

    async with engine.begin() as conn:
        for table in (deadlines, process_states):
            await conn.execute(sa.delete(table))


def later(hours: float = 1.0) -> datetime:
    """A time well past every 30-minute deadline scheduled now."""
    return datetime.now(UTC) + timedelta(hours=hours)


def event_data(records: list[RecordedEvent], event_type: str) -> list[dict[str, Any]]:
    """The data of the records of one type."""
    return [record.data for record in records if record.event_type == event_type]
