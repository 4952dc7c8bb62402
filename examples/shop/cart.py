"""The cart: what a customer gathers before checking out, and how long the shop keeps it.

A cart the customer gave up (``CartCancelled``) is of no use once the period the shop
promises to keep it for has passed: ``CART_RETENTION`` deletes such carts
(``eventfold run --retention-every`` applies it on a schedule, ``eventfold streams expire``
on demand). Carts still open, or checked out, are left alone.
"""

from __future__ import annotations

from datetime import timedelta

from eventfold import Aggregate, DomainError, Event, Retention, applies


class CartOpened(Event):
    """A customer started a cart."""

    customer: str


class ItemPutInCart(Event):
    """A product went into the cart."""

    sku: str
    quantity: int


class CartCancelled(Event):
    """The customer gave the cart up."""


CART_EVENTS: tuple[type[Event], ...] = (CartOpened, ItemPutInCart, CartCancelled)
"""The cart's events, for the application's registry."""

CART_KEPT_FOR = timedelta(days=30)
"""How long a cancelled cart is kept."""

CART_RETENTION = Retention("Cart", max_age=CART_KEPT_FOR, closed_by=(CartCancelled,))
"""Cancelled carts are deleted once their cancellation is older than ``CART_KEPT_FOR``."""


class CartClosed(DomainError):
    """A cancelled cart takes no more products and is not cancelled again."""


class Cart(Aggregate):
    """A customer's cart: opened, filled, and perhaps given up."""

    customer: str = ""
    items: int = 0
    cancelled: bool = False

    def open(self, customer: str) -> None:
        """Open the cart for ``customer``."""
        self.record(CartOpened(customer=customer))

    def put(self, sku: str, quantity: int) -> None:
        """Put ``quantity`` of ``sku`` into the cart."""
        if self.cancelled:
            raise CartClosed(f"cart {self.id} was cancelled: open a new one")
        self.record(ItemPutInCart(sku=sku, quantity=quantity))

    def cancel(self) -> None:
        """Give the cart up."""
        if self.cancelled:
            raise CartClosed(f"cart {self.id} was cancelled already")
        self.record(CartCancelled())

    @applies(CartOpened)
    def _opened(self, event: CartOpened) -> None:
        self.customer = event.customer

    @applies(ItemPutInCart)
    def _put(self, event: ItemPutInCart) -> None:
        self.items += event.quantity

    @applies(CartCancelled)
    def _cancelled(self, event: CartCancelled) -> None:
        self.cancelled = True
