"""The console tests' application: the example shop plus an order audit that refuses the
orders of customers named in a "poison" file, the stand-in for a bug an operator fixes.

``eventfold --app ui_app:app`` loads it (tests/ui on the path). While the file named by
``UI_TEST_POISON`` lists a customer, the audit fails on that customer's orders and, with no
retries, parks them at once; remove the name and a retry applies them.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from eventfold import App, FailurePolicy, Projection, ProjectionContext, handles
from examples.shop.events import SHOP_EVENTS, OrderPlaced
from examples.shop.fulfilment import Fulfilment
from examples.shop.inventory import InventoryItem
from examples.shop.legacy import shop_upcasters
from examples.shop.order import Order
from examples.shop.payment import Payment
from examples.shop.read_models import CustomerTotals, OrderList

POISON_ENV = "UI_TEST_POISON"
"""The environment variable naming the file of refused customers, one per line."""


class AuditRefused(Exception):
    """The audit refuses an order of a customer in the poison file."""


def refused_customers() -> set[str]:
    """The customers the poison file names now (none without one)."""
    path = os.environ.get(POISON_ENV)
    if not path or not Path(path).exists():
        return set()
    return set(Path(path).read_text().split())


class OrderAudit(Projection):
    """One row per order placed, refusing the poison file's customers."""

    name = "order_audit"
    metadata = sa.MetaData()
    audit = sa.Table(
        "ui_order_audit", metadata,
        sa.Column("order_id", sa.Text(), primary_key=True),
        sa.Column("customer", sa.Text(), nullable=False),
    )
    failure = FailurePolicy(retries=0)

    @handles(OrderPlaced)
    async def _placed(self, event: OrderPlaced, ctx: ProjectionContext) -> None:
        if event.customer in refused_customers():
            raise AuditRefused(f"customer {event.customer!r} is on the poison list")
        await ctx.connection.execute(
            ctx.ui_order_audit.insert().values(order_id=event.order_id, customer=event.customer)
        )


app = App(
    events=SHOP_EVENTS,
    upcasters=shop_upcasters(),
    aggregates=[Order, InventoryItem, Payment],
    projections=[OrderList(), CustomerTotals(), OrderAudit()],
    subscribers=[Fulfilment()],
)
