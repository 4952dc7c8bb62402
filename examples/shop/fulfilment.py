"""The fulfilment process: from a placed order to a confirmed or cancelled one.

    OrderPlaced ─ reserve each line's stock + request the payment ─┬─ PaymentCharged ─ confirm
                  (one unit of work: all of it, or none)           ├─ PaymentFailed ─┐
                                                                   └─ 15 min, no answer ─┴─ undo

Each step it takes is recorded with the compensation that undoes it; undoing runs the
compensations newest first: void the payment request, release each reservation, cancel
the order. The payment timeout is a durable deadline (a row written with the instance's
state), so it fires after a restart too.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import partial

from pydantic import BaseModel

from eventfold import ProcessContext, ProcessManager, compensation, on, on_timeout
from eventfold.processes import Step
from examples.shop.events import OrderPlaced, PaymentCharged, PaymentFailed
from examples.shop.inventory import InsufficientStock, InventoryItem
from examples.shop.order import Order
from examples.shop.payment import Payment

PAYMENT_TIMEOUT = timedelta(minutes=15)
"""How long the provider has to answer before the order is cancelled."""


class PaymentOverdue(BaseModel):
    """The timeout message: the provider did not answer in time."""

    order_id: str


class FulfilmentState(BaseModel):
    """What one instance remembers about its order."""

    customer: str = ""
    total: Decimal = Decimal(0)
    currency: str = ""


Context = ProcessContext[FulfilmentState]


class Fulfilment(ProcessManager[FulfilmentState]):
    """Reserves stock, requests the payment and confirms the order, or undoes it all."""

    name = "fulfilment"
    key = "order_id"
    state_type = FulfilmentState

    @on(OrderPlaced, start=True)
    async def placed(self, event: OrderPlaced, ctx: Context) -> None:
        """Reserve every line's stock and make sure the payment is asked for (the checkout
        reserves it with the order; an order placed otherwise has none yet), as one unit of
        work - all of it lands, or none - then start the clock."""
        ctx.state = FulfilmentState(
            customer=event.customer, total=event.total, currency=event.currency
        )
        ctx.add_step(undo=self.cancel_order)  # the customer's step: undone by cancelling
        try:
            async with ctx.together() as unit:
                for line in event.lines:
                    reserve = partial(
                        InventoryItem.reserve, order_id=event.order_id, quantity=line.quantity
                    )
                    unit.send(
                        InventoryItem, line.sku, reserve, undo=self.release_stock,
                        data={"sku": line.sku},
                    )
                unit.send(
                    Payment, event.order_id,
                    lambda payment: payment.request_unless_asked(event.total, event.currency),
                    undo=self.void_payment,
                )
        except InsufficientStock as short:
            # Nothing of the unit was written: no line reserved. The checkout may have
            # reserved the payment with the order: void it, then cancel the order.
            ctx.add_step(undo=self.void_payment)
            await ctx.compensate(f"out of stock: {short}")
            return
        ctx.schedule(PaymentOverdue(order_id=event.order_id), after=PAYMENT_TIMEOUT)

    @on(PaymentCharged)
    async def charged(self, event: PaymentCharged, ctx: Context) -> None:
        """Paid: confirm the order; completing also cancels the payment timeout."""
        await ctx.send(Order, ctx.key, lambda order: order.confirm())
        ctx.complete()

    @on(PaymentFailed)
    async def failed(self, event: PaymentFailed, ctx: Context) -> None:
        """Refused: undo every step taken so far."""
        await ctx.compensate(f"payment failed: {event.reason}")

    @on_timeout(PaymentOverdue)
    async def overdue(self, message: PaymentOverdue, ctx: Context) -> None:
        """No answer in time: undo, starting with the payment request itself."""
        minutes = int(PAYMENT_TIMEOUT.total_seconds() // 60)
        await ctx.compensate(f"no payment within {minutes} minutes")

    # -- compensations, run newest first ---------------------------------------------------

    @compensation
    async def void_payment(self, step: Step, ctx: Context) -> None:
        """Withdraw the payment request, so a late answer is refused."""
        await ctx.send(Payment, ctx.key, lambda payment: payment.void(_reason(ctx)))

    @compensation
    async def release_stock(self, step: Step, ctx: Context) -> None:
        """Give one line's reservation back to the shelf."""
        await ctx.send(InventoryItem, step.data["sku"], lambda item: item.release(ctx.key))

    @compensation
    async def cancel_order(self, step: Step, ctx: Context) -> None:
        """Cancel the order, saying why."""
        await ctx.send(Order, ctx.key, lambda order: order.cancel(_reason(ctx)))


def _reason(ctx: Context) -> str:
    return ctx.reason or "cancelled"
