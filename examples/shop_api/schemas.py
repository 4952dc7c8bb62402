"""What goes over the wire: the request bodies and the JSON views of the shop's state.

Money travels as decimal strings ("12.50"), never floats, as the events hold it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from examples.shop.inventory import InventoryItem
from examples.shop.order import Order
from examples.shop.read_models import CustomerTotal


class Line(BaseModel):
    """One product on an order."""

    sku: str = Field(min_length=1)
    quantity: int
    unit_price: Decimal


class PlaceOrder(BaseModel):
    """``POST /orders``: the client names the order, so a retry cannot create a second one."""

    order_id: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    customer: str = Field(min_length=1)
    lines: list[Line]
    currency: str = Field(default="EUR", min_length=3, max_length=3)


class CancelOrder(BaseModel):
    """``POST /orders/{order_id}/cancel``."""

    reason: str = Field(min_length=1)


class ReceiveStock(BaseModel):
    """``POST /inventory/{sku}/receipts``: a delivery arrived."""

    quantity: int


class OrderView(BaseModel):
    """An order as its stream says now (the write model: always up to date)."""

    order_id: str
    customer: str
    status: str
    total: Decimal
    currency: str
    version: int

    @classmethod
    def of(cls, order: Order) -> OrderView:
        """The view of a loaded order."""
        return cls(
            order_id=order.id, customer=order.customer, status=order.status,
            total=order.total, currency=order.currency, version=order.version,
        )


class ItemView(BaseModel):
    """A product's stock as its stream says now."""

    sku: str
    on_hand: int
    available: int
    version: int

    @classmethod
    def of(cls, item: InventoryItem) -> ItemView:
        """The view of a loaded inventory item."""
        return cls(sku=item.id, on_hand=item.on_hand, available=item.available,
                   version=item.version)


class OrderListItem(BaseModel):
    """A row of the ``OrderList`` read model."""

    order_id: str
    customer: str
    status: str
    total: Decimal
    currency: str
    reason: str | None
    placed_at: datetime


class OrderPage(BaseModel):
    """One page of the order list, oldest first; ``next_offset`` is None on the last."""

    items: list[OrderListItem]
    offset: int
    limit: int
    next_offset: int | None


class CurrencyTotal(BaseModel):
    """What a customer ordered and spent in one currency."""

    currency: str
    placed: int
    confirmed: int
    cancelled: int
    spent: Decimal

    @classmethod
    def of(cls, total: CustomerTotal) -> CurrencyTotal:
        """The view of a ``CustomerTotals`` row."""
        return cls(currency=total.currency, placed=total.placed, confirmed=total.confirmed,
                   cancelled=total.cancelled, spent=total.spent)


class CustomerTotalsView(BaseModel):
    """A customer's totals from the ``CustomerTotals`` read model, one per currency."""

    customer: str
    totals: list[CurrencyTotal]


class ErrorBody(BaseModel):
    """Every error the API answers itself: the error's type and what to do about it."""

    error: str
    detail: str
