"""A sample event that evolved over three versions, and the upcasters that carry it forward.

Stored history of ``OrderPlaced``:
- v1 ``{"order_id", "amount"}`` (cents, always euros),
- v2 adds ``"currency"``,
- v3 (current) nests the amount: ``{"order_id", "total": {"cents", "currency"}, "note"}``.
``OrderCreated`` v1 is the type's name before it was renamed, and ``OrderPlacedAndPaid`` v1
a stored event that is now read as an ``OrderPlaced`` followed by a ``PaymentReceived``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from eventfold.eventstore import Event, EventRegistry, StoredShape
from eventfold.upcasters import Upcasters


class Money(BaseModel):
    """An amount in cents of one currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cents: int
    currency: str


class OrderPlaced(Event):
    """An order was placed (current version 3)."""

    schema_version = 3

    order_id: str
    total: Money
    note: str = ""


class PaymentReceived(Event):
    """A payment for an order arrived."""

    order_id: str
    cents: int


class OrderPlacedV1(Event):
    """The shape that old code wrote: only the old writer registry holds it."""

    event_type = "OrderPlaced"
    schema_version = 1

    order_id: str
    amount: int


class OrderPlacedV2(Event):
    """The v2 shape that old code wrote."""

    event_type = "OrderPlaced"
    schema_version = 2

    order_id: str
    amount: int
    currency: str


class OrderCreated(Event):
    """The name ``OrderPlaced`` had before the rename (stored at v1)."""

    order_id: str
    amount: int


class OrderPlacedAndPaid(Event):
    """One stored event that is now two."""

    order_id: str
    amount: int


def build_upcasters() -> Upcasters:
    """The complete chain: v1 -> v2 -> v3, the rename and the split."""
    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", 1)
    def add_currency(data: dict[str, Any]) -> dict[str, Any]:
        """Orders before v2 were all in euros."""
        data["currency"] = "EUR"  # mutates its argument on purpose: the chain copies
        return data

    @upcasters.register("OrderPlaced", 2)
    def nest_total(data: dict[str, Any]) -> dict[str, Any]:
        """The amount and currency became one ``total``."""
        return {
            "order_id": data["order_id"],
            "total": {"cents": data["amount"], "currency": data["currency"]},
        }

    upcasters.rename("OrderCreated", 1, "OrderPlaced", to_version=1)

    @upcasters.split(
        "OrderPlacedAndPaid", 1, into=[("OrderPlaced", 1), ("PaymentReceived", 1)]
    )
    def split_payment(data: dict[str, Any]) -> list[StoredShape]:
        """The payment became an event of its own."""
        return [
            ("OrderPlaced", 1, {"order_id": data["order_id"], "amount": data["amount"]}),
            ("PaymentReceived", 1, {"order_id": data["order_id"], "cents": data["amount"]}),
        ]

    return upcasters


def reader_registry(upcasters: Upcasters | None = None) -> EventRegistry:
    """What today's application registers."""
    return EventRegistry(
        [OrderPlaced, PaymentReceived],
        upcaster=upcasters if upcasters is not None else build_upcasters(),
    )


def writer_registry() -> EventRegistry:
    """What the old application registered (old classes only, no upcasters)."""
    return EventRegistry([OrderPlacedV1, OrderCreated, OrderPlacedAndPaid, PaymentReceived])
