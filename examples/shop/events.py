"""What happens to an order, as events: named in the past tense, registered explicitly."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from eventfold import Event, EventRegistry


class OrderLine(BaseModel):
    """One product on an order."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int
    unit_price: Decimal


class OrderPlaced(Event):
    """A customer placed an order."""

    customer: str
    lines: tuple[OrderLine, ...]

    @property
    def total(self) -> Decimal:
        """What the customer owes."""
        return sum((line.unit_price * line.quantity for line in self.lines), Decimal(0))


class PaymentReceived(Event):
    """Money for an order arrived."""

    amount: Decimal
    method: str


class OrderShipped(Event):
    """The order left the warehouse."""

    carrier: str
    shipped_by: str


def shop_events() -> EventRegistry:
    """A registry of the shop's events: the store encodes and decodes with it."""
    return EventRegistry([OrderPlaced, PaymentReceived, OrderShipped])
