"""What happens in the shop, as events: named in the past tense, registered explicitly.

Three streams take part in an order's life: the order itself (``Order-<id>``), one stream
per product in the warehouse (``InventoryItem-<sku>``) and the payment of the order
(``Payment-<id>``). Every event that the fulfilment process reacts to carries the
``order_id``: that field names the process instance the event belongs to.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from eventfold import Event


class OrderLine(BaseModel):
    """One product on an order."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        """What the line costs."""
        return self.unit_price * self.quantity


# --- orders ---------------------------------------------------------------------------------


class OrderPlaced(Event):
    """A customer placed an order.

    Version 2 added ``currency``: the shop used to sell in euros only, and version 1 events
    (stored without it) are read as euros by the upcaster in ``examples.shop.legacy``.
    """

    schema_version = 2

    order_id: str
    customer: str
    lines: tuple[OrderLine, ...]
    currency: str

    @property
    def total(self) -> Decimal:
        """What the customer owes."""
        return sum((line.amount for line in self.lines), Decimal(0))


class OrderConfirmed(Event):
    """Stock is reserved and the payment went through: the order will ship."""

    order_id: str


class OrderCancelled(Event):
    """The order will not ship; ``reason`` says why."""

    order_id: str
    reason: str


# --- the warehouse --------------------------------------------------------------------------


class StockReceived(Event):
    """A delivery of a product arrived at the warehouse."""

    sku: str
    quantity: int


class StockReserved(Event):
    """Units of a product were put aside for an order."""

    sku: str
    order_id: str
    quantity: int


class StockReleased(Event):
    """An order's reservation was given back to the shelf."""

    sku: str
    order_id: str
    quantity: int


# --- payments -------------------------------------------------------------------------------


class PaymentRequested(Event):
    """The shop asked the payment provider to charge the order's total."""

    order_id: str
    amount: Decimal
    currency: str


class PaymentCharged(Event):
    """The provider charged the customer."""

    order_id: str
    reference: str


class PaymentFailed(Event):
    """The provider refused the charge."""

    order_id: str
    reason: str


class PaymentVoided(Event):
    """The shop withdrew its request (the order was cancelled); a late answer is refused."""

    order_id: str
    reason: str


SHOP_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced, OrderConfirmed, OrderCancelled,
    StockReceived, StockReserved, StockReleased,
    PaymentRequested, PaymentCharged, PaymentFailed, PaymentVoided,
)
"""Every event class of the shop, for the application's registry."""
