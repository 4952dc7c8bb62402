"""A shop opened for a test: the App connected, the runner serving, and the moves of a day."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from eventfold import App, Runner, Running
from eventfold.processes import ProcessInstance
from examples.shop.app import build_app
from examples.shop.checkout import check_out
from examples.shop.events import OrderLine
from examples.shop.fulfilment import Fulfilment, FulfilmentState
from examples.shop.inventory import InventoryItem
from examples.shop.order import Order
from examples.shop.payment import Payment
from examples.shop.story import PRICES, settle


def line(sku: str, quantity: int) -> OrderLine:
    """A line at the story's price."""
    return OrderLine(sku=sku, quantity=quantity, unit_price=PRICES[sku])


@dataclass
class Shop:
    """The shop of one test."""

    app: App
    running: Running
    runner: Runner
    fulfilment: Fulfilment

    async def settle(self) -> None:
        """Wait until every subscriber handled everything, what they appended included."""
        await settle(self.running.store, self.runner)

    async def stock(self, **levels: int) -> None:
        """Receive stock: ``await shop.stock(book=10)``."""
        for sku, level in levels.items():
            await self.running.repository.create(
                InventoryItem, sku, partial(InventoryItem.receive, quantity=level)
            )

    async def place(self, order_id: str, customer: str, *lines: OrderLine) -> None:
        """A customer places an order; the runner takes it from there (settled)."""
        await self.running.repository.create(
            Order, order_id, partial(Order.place, customer=customer, lines=lines)
        )
        await self.settle()

    async def check_out(self, order_id: str, customer: str, *lines: OrderLine) -> None:
        """A customer checks out: the order and its payment request in one transaction; the
        runner takes it from there (settled)."""
        await check_out(self.running.repository, order_id, customer, lines)
        await self.settle()

    async def answer(self, order_id: str, command: Callable[[Payment], None]) -> None:
        """The payment provider answers (settled)."""
        await self.running.repository.update(Payment, order_id, command)
        await self.settle()

    async def fire(self, after: timedelta) -> int:
        """Fire the timeouts due ``after`` from now (settled); how many fired."""
        poller = self.running.deadline_poller()
        assert poller is not None
        fired = await poller.fire_due(now=datetime.now(UTC) + after)
        await self.settle()
        return fired

    async def instance(self, order_id: str) -> ProcessInstance[FulfilmentState]:
        """The fulfilment instance of an order."""
        found = await self.fulfilment.instance(self.running.engine, order_id)
        assert found is not None, f"no fulfilment instance for {order_id}"
        return found

    async def types(self, stream_id: str) -> list[str]:
        """The event types of a stream, in order."""
        return [record.event_type for record in await self.running.store.read_stream(stream_id)]

    async def item(self, sku: str) -> InventoryItem:
        """The inventory item as stored now."""
        return await self.running.repository.get(InventoryItem, sku)


@asynccontextmanager
async def open_shop(url: str) -> AsyncIterator[Shop]:
    """The shop on ``url`` with its runner started; stopped and closed on exit."""
    app = build_app()
    fulfilment = next(s for s in app.subscribers if isinstance(s, Fulfilment))
    async with app.connect(url) as running, running.runner() as runner:
        yield Shop(app, running, runner, fulfilment)
