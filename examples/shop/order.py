"""The order: placed by a customer, then confirmed or cancelled, never both."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from decimal import Decimal

from eventfold import Aggregate, DomainError, applies
from examples.shop.events import OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced


class OrderStatus(enum.StrEnum):
    """Where an order is in its life."""

    NEW = "new"
    PLACED = "placed"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class EmptyOrder(DomainError):
    """An order needs at least one line."""


class InvalidLine(DomainError):
    """A line's quantity must be positive, its price not negative, its product unique."""


class OrderAlreadyPlaced(DomainError):
    """An order is placed once; a second ``place`` on the same id is refused."""


class OrderNotPending(DomainError):
    """Confirming or cancelling needs a placed order that is not settled the other way."""


class Order(Aggregate):
    """A customer's order. Invariants: at least one valid line; placed once; a confirmed
    order is never cancelled and a cancelled one never confirmed."""

    customer: str = ""
    status: OrderStatus = OrderStatus.NEW
    total: Decimal = Decimal(0)
    currency: str = ""

    def place(self, customer: str, lines: Iterable[OrderLine], currency: str = "EUR") -> None:
        """Place the order for ``customer``."""
        if self.status is not OrderStatus.NEW:
            raise OrderAlreadyPlaced(f"order {self.id} was placed already ({self.status})")
        lines = tuple(lines)
        if not lines:
            raise EmptyOrder(f"order {self.id} has no lines: add at least one product")
        for line in lines:
            if line.quantity <= 0 or line.unit_price < 0:
                raise InvalidLine(
                    f"order {self.id}: {line.quantity} x {line.sku} at {line.unit_price} "
                    "(quantities are positive, prices not negative)"
                )
        skus = [line.sku for line in lines]
        if len(set(skus)) < len(skus):
            raise InvalidLine(f"order {self.id} names a product twice: one line per product")
        self.record(
            OrderPlaced(order_id=self.id, customer=customer, lines=lines, currency=currency)
        )

    def confirm(self) -> None:
        """Confirm the order (stock reserved, payment charged); confirming twice is a no-op."""
        if self.status is OrderStatus.CONFIRMED:
            return
        if self.status is not OrderStatus.PLACED:
            raise OrderNotPending(f"order {self.id} is {self.status}: it cannot be confirmed")
        self.record(OrderConfirmed(order_id=self.id))

    def cancel(self, reason: str) -> None:
        """Cancel the order; cancelling twice is a no-op (compensations may run again)."""
        if self.status is OrderStatus.CANCELLED:
            return
        if self.status is not OrderStatus.PLACED:
            raise OrderNotPending(
                f"order {self.id} is {self.status}: only a placed order can be cancelled "
                "(a confirmed one is refunded instead)"
            )
        self.record(OrderCancelled(order_id=self.id, reason=reason))

    @applies(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.customer = event.customer
        self.status = OrderStatus.PLACED
        self.total = event.total
        self.currency = event.currency

    @applies(OrderConfirmed)
    def _confirmed(self, event: OrderConfirmed) -> None:
        self.status = OrderStatus.CONFIRMED

    @applies(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = OrderStatus.CANCELLED
