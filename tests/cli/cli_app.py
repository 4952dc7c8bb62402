"""The tiny application the command-line tests load with ``--app cli_app:app``.

Carts, over the events of ``cli_support`` (stored as ``ItemAdded`` v1; this app reads them
as v2 through an upcaster): a ``Cart`` aggregate, a ``cart_totals`` projection that parks
events of the SKU ``poison``, and a process manager so ``eventfold run`` has deadlines to
poll. ``changed_app`` is the same application after an incompatible schema change, and
``not_an_app`` is what ``--app`` must refuse.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from cli_support import CartOpened

from eventfold import (
    Aggregate,
    App,
    Event,
    FailurePolicy,
    ProcessContext,
    ProcessManager,
    Projection,
    ProjectionContext,
    Upcasters,
    applies,
    handles,
    on,
)


class ItemAdded(Event):
    """An item went into a cart; v2 counts it (v1 events meant one)."""

    schema_version = 2

    sku: str
    price: Decimal
    quantity: int


upcasters = Upcasters()


@upcasters.register("ItemAdded", 1)
def _one_of_each(data: dict[str, Any]) -> dict[str, Any]:
    """v1 events added one item each."""
    return {**data, "quantity": 1}


class Cart(Aggregate):
    """A shopping cart: its owner and what it holds."""

    state_version = 2

    owner: str = ""
    items: int = 0
    total: Decimal = Decimal(0)

    def open(self, owner: str) -> None:
        """Open the cart for ``owner``."""
        self.record(CartOpened(owner=owner))

    def add(self, sku: str, price: Decimal, quantity: int = 1) -> None:
        """Put ``quantity`` items of ``sku`` into the cart."""
        self.record(ItemAdded(sku=sku, price=price, quantity=quantity))

    @applies(CartOpened)
    def _opened(self, event: CartOpened) -> None:
        self.owner = event.owner

    @applies(ItemAdded)
    def _added(self, event: ItemAdded) -> None:
        self.items += event.quantity
        self.total += event.price * event.quantity


class PoisonedItem(Exception):
    """What the projection raises for the SKU ``poison``."""


class CartTotals(Projection):
    """Quantity and total per cart; an item of SKU ``poison`` fails and is parked."""

    name = "cart_totals"
    metadata = sa.MetaData()
    totals = sa.Table(
        "cli_cart_totals",
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
    )
    failure = FailurePolicy(retries=0, backoff=0.001)

    def __init__(self, *, echo: bool = False) -> None:
        super().__init__()
        self.echo = echo
        """Print ``applied EVENT_ID`` per event (before the batch commits), so a test
        reading ``eventfold run``'s output knows how far it got without polling."""

    @handles(ItemAdded)
    async def _added(self, event: ItemAdded, ctx: ProjectionContext) -> None:
        if event.sku == "poison":
            raise PoisonedItem(f"{event.sku} must not be counted")
        table = ctx.tables["cli_cart_totals"]
        stream_id = ctx.envelope.stream_id
        amount = event.price * event.quantity
        updated = await ctx.connection.execute(
            table.update().where(table.c.stream_id == stream_id).values(
                quantity=table.c.quantity + event.quantity, total=table.c.total + amount,
            )
        )
        if updated.rowcount == 0:
            await ctx.connection.execute(table.insert().values(
                stream_id=stream_id, quantity=event.quantity, total=amount,
            ))
        if self.echo:
            print(f"applied {ctx.envelope.event_id}", flush=True)


class Welcome(ProcessManager[dict[str, Any]]):
    """Greets each new cart's owner (it only remembers that it did)."""

    name = "welcome"
    key = "owner"

    @on(CartOpened, start=True)
    async def opened(self, event: CartOpened, ctx: ProcessContext[dict[str, Any]]) -> None:
        ctx.state["greeted"] = True


app = App(
    events=[CartOpened, ItemAdded],
    upcasters=upcasters,
    aggregates=[Cart],
    projections=[CartTotals()],
    subscribers=[Welcome()],
)


echo_app = App(
    events=[CartOpened, ItemAdded],
    upcasters=upcasters,
    aggregates=[Cart],
    projections=[CartTotals(echo=True)],
    subscribers=[Welcome()],
)
"""``app`` whose projection says which events it applied (for ``eventfold run`` tests)."""


apart_app = App(
    events=[CartOpened, ItemAdded],
    upcasters=upcasters,
    projections=[CartTotals()],
    read_models="sqlite:///apart_models.db",
)
"""``app``'s projection with its read models in their own SQLite file (in the working
directory)."""


class ChangedCartOpened(Event):
    """``CartOpened`` after a careless edit: ``owner`` renamed, no version bump."""

    event_type = "CartOpened"

    customer: str


changed_app = App(events=[ChangedCartOpened, ItemAdded], upcasters=upcasters)

not_an_app = "a string"
