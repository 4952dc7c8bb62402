"""A small domain for the aggregate tests: orders with lines, and bank accounts."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import ClassVar

import pydantic

from eventfold.aggregates import Aggregate, DomainError, applies
from eventfold.eventstore import Event, EventRegistry

# --- orders -------------------------------------------------------------------------------


class Line(pydantic.BaseModel):
    """One line of an order."""

    model_config = pydantic.ConfigDict(frozen=True)

    sku: str
    quantity: int
    price: Decimal


class Status(enum.Enum):
    """Where an order is in its life."""

    NEW = "new"
    PLACED = "placed"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


class OrderPlaced(Event):
    """A customer placed the order."""

    customer: str


class LineAdded(Event):
    """A line was added to the order."""

    line: Line


class OrderPaid(Event):
    """The order was paid."""

    payment_id: uuid.UUID
    amount: Decimal


class OrderShipped(Event):
    """The order left the warehouse."""

    shipped_at: datetime


class OrderCancelled(Event):
    """The order was cancelled before shipping."""

    reason: str


class EmptyOrder(DomainError):
    """An order needs at least one line."""


class InvalidLine(DomainError):
    """A line's quantity or price is not positive."""


class OrderNotPlaced(DomainError):
    """The command needs a placed order."""


class OrderAlreadyShipped(DomainError):
    """Shipped orders cannot change."""


class Order(Aggregate):
    """An order: placed with lines, paid, then shipped or cancelled."""

    status: Status = Status.NEW
    customer: str = ""
    lines: list[Line] = []  # noqa: RUF012 - state default, copied per instance
    total: Decimal = Decimal(0)
    payments: set[uuid.UUID] = set()  # noqa: RUF012
    shipped_at: datetime | None = None
    cancel_reason: str | None = None

    def place(self, customer: str, lines: list[Line]) -> None:
        """Place the order; every line must be valid (checked as it is added)."""
        if self.status is not Status.NEW:
            raise OrderAlreadyShipped(f"order {self.id} was already placed")
        if not lines:
            raise EmptyOrder(self.id)
        self.record(OrderPlaced(customer=customer))
        for line in lines:
            # Deliberately checked after recording earlier events: the command must still
            # leave nothing behind when a later line is invalid.
            self.add_line(line)

    def add_line(self, line: Line) -> None:
        """Add a line to a placed order."""
        if self.status is not Status.PLACED:
            raise OrderNotPlaced(self.id)
        if line.quantity <= 0 or line.price <= 0:
            raise InvalidLine(f"{line.sku}: quantity and price must be positive")
        self.record(LineAdded(line=line))

    def pay(self, payment_id: uuid.UUID, amount: Decimal) -> None:
        """Record a payment."""
        if self.status is not Status.PLACED:
            raise OrderNotPlaced(self.id)
        self.record(OrderPaid(payment_id=payment_id, amount=amount))

    def ship(self, at: datetime) -> None:
        """Ship the order; ``at`` comes from the application edge."""
        if self.status is Status.SHIPPED:
            raise OrderAlreadyShipped(self.id)
        if self.status is not Status.PLACED:
            raise OrderNotPlaced(self.id)
        self.record(OrderShipped(shipped_at=at))

    def cancel(self, reason: str) -> None:
        """Cancel an order that has not shipped."""
        if self.status is Status.SHIPPED:
            raise OrderAlreadyShipped(self.id)
        if self.status is not Status.PLACED:
            raise OrderNotPlaced(self.id)
        self.record(OrderCancelled(reason=reason))

    @applies(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.status = Status.PLACED
        self.customer = event.customer

    @applies(LineAdded)
    def _line_added(self, event: LineAdded) -> None:
        self.lines.append(event.line)
        self.total += event.line.price * event.line.quantity

    @applies(OrderPaid)
    def _paid(self, event: OrderPaid) -> None:
        self.payments.add(event.payment_id)

    @applies(OrderShipped)
    def _shipped(self, event: OrderShipped) -> None:
        self.status = Status.SHIPPED
        self.shipped_at = event.shipped_at

    @applies(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = Status.CANCELLED
        self.cancel_reason = event.reason


# --- accounts -----------------------------------------------------------------------------


class Deposited(Event):
    """Money came in."""

    amount: int


class Withdrawn(Event):
    """Money went out."""

    amount: int


class AccountClosed(Event):
    """The account was closed; it takes no more movements."""


class InsufficientFunds(DomainError):
    """A withdrawal larger than the balance."""


class AccountIsClosed(DomainError):
    """A movement on a closed account."""


class Account(Aggregate):
    """A bank account: the aggregate of the property and contention tests."""

    category: ClassVar[str] = "Acct"

    balance: int = 0
    movements: int = 0
    closed: bool = False
    history: list[int] = []  # noqa: RUF012

    def deposit(self, amount: int) -> None:
        """Put money in."""
        self._open()
        if amount <= 0:
            raise ValueError("deposit a positive amount")
        self.record(Deposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        """Take money out, never below zero."""
        self._open()
        if amount > self.balance:
            raise InsufficientFunds(f"balance {self.balance} < {amount}")
        self.record(Withdrawn(amount=amount))

    def close(self) -> None:
        """Close the account."""
        self._open()
        self.record(AccountClosed())

    def _open(self) -> None:
        if self.closed:
            raise AccountIsClosed(self.id)

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.movements += 1
        self.history.append(event.amount)

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount
        self.movements += 1
        self.history.append(-event.amount)

    @applies(AccountClosed)
    def _closed(self, event: AccountClosed) -> None:
        self.closed = True


SHOP_EVENTS: tuple[type[Event], ...] = (
    OrderPlaced, LineAdded, OrderPaid, OrderShipped, OrderCancelled,
    Deposited, Withdrawn, AccountClosed,
)


def shop_registry() -> EventRegistry:
    """A registry of every event of the sample domain."""
    return EventRegistry(SHOP_EVENTS)
