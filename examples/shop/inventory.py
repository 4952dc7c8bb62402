"""A product on the warehouse's shelves: stock received, reserved for orders, released."""

from __future__ import annotations

from eventfold import Aggregate, DomainError, applies
from examples.shop.events import StockReceived, StockReleased, StockReserved


class InvalidQuantity(DomainError):
    """Stock moves in positive quantities."""


class InsufficientStock(DomainError):
    """An order wants more units than are available (on hand and not reserved)."""

    def __init__(self, sku: str, wanted: int, available: int) -> None:
        self.sku = sku
        self.wanted = wanted
        self.available = available
        super().__init__(f"{wanted} x {sku} wanted, {available} available")


class AlreadyReserved(DomainError):
    """An order reserves a product once; change the reservation by releasing it first."""


class InventoryItem(Aggregate):
    """One product (its id is the SKU). Invariant: reservations never exceed what is on hand.

    Its stream grows with every order and every delivery and is loaded for each
    reservation, so it keeps a snapshot every 20 events.
    """

    snapshot_every = 20

    on_hand: int = 0
    """Units in the warehouse, reserved or not."""
    reservations: dict[str, int] = {}  # noqa: RUF012 - each item gets its own copy
    """Units held for orders, by order id."""

    @property
    def available(self) -> int:
        """Units that are on hand and not reserved."""
        return self.on_hand - sum(self.reservations.values())

    def receive(self, quantity: int) -> None:
        """A delivery of ``quantity`` units arrived."""
        if quantity <= 0:
            raise InvalidQuantity(f"received {quantity} x {self.id}: receive at least one")
        self.record(StockReceived(sku=self.id, quantity=quantity))

    def restock_to(self, level: int) -> None:
        """Receive what it takes to have ``level`` units available (nothing if there are)."""
        if self.available < level:
            self.receive(level - self.available)

    def reserve(self, order_id: str, quantity: int) -> None:
        """Put ``quantity`` units aside for the order."""
        if quantity <= 0:
            raise InvalidQuantity(f"reserve {quantity} x {self.id}: reserve at least one")
        if order_id in self.reservations:
            raise AlreadyReserved(
                f"order {order_id} holds {self.reservations[order_id]} x {self.id} already"
            )
        if quantity > self.available:
            raise InsufficientStock(self.id, quantity, self.available)
        self.record(StockReserved(sku=self.id, order_id=order_id, quantity=quantity))

    def release(self, order_id: str) -> None:
        """Give the order's reservation back; nothing to do if it holds none."""
        quantity = self.reservations.get(order_id)
        if quantity is not None:
            self.record(StockReleased(sku=self.id, order_id=order_id, quantity=quantity))

    @applies(StockReceived)
    def _received(self, event: StockReceived) -> None:
        self.on_hand += event.quantity

    @applies(StockReserved)
    def _reserved(self, event: StockReserved) -> None:
        self.reservations[event.order_id] = event.quantity

    @applies(StockReleased)
    def _released(self, event: StockReleased) -> None:
        del self.reservations[event.order_id]
