"""The shop's read models: the order list and what each customer ordered and spent.

Each projection owns its tables (a ``MetaData`` of its own, so a rebuild can build them
afresh beside the live ones) and writes them through ``ctx``, in the transaction that also
advances its checkpoint: every event changes a read model exactly once. Queries read the
class attributes' tables, which always name the live copies.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold import Projection, ProjectionContext, handles
from examples.shop.events import OrderCancelled, OrderConfirmed, OrderPlaced


def cents(amount: Decimal) -> int:
    """Money as a whole number of cents: exact in every database."""
    return int((amount * 100).to_integral_value())


def from_cents(amount: int) -> Decimal:
    """Cents back to money with two decimals: 2620 -> Decimal("26.20")."""
    return Decimal(amount).scaleb(-2)


class OrderList(Projection):
    """One row per order: who placed it, its total, where it stands and why."""

    name = "order_list"
    metadata = sa.MetaData()
    orders = sa.Table(
        "shop_orders", metadata,
        sa.Column("order_id", sa.Text(), primary_key=True),
        sa.Column("customer", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
    )

    @handles(OrderPlaced)
    async def _placed(self, event: OrderPlaced, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.shop_orders.insert().values(
            order_id=event.order_id, customer=event.customer, status="placed",
            currency=event.currency, total_cents=cents(event.total),
            placed_at=ctx.envelope.recorded_at,
        ))

    @handles(OrderConfirmed)
    async def _confirmed(self, event: OrderConfirmed, ctx: ProjectionContext) -> None:
        await self._set_status(ctx, event.order_id, "confirmed", None)

    @handles(OrderCancelled)
    async def _cancelled(self, event: OrderCancelled, ctx: ProjectionContext) -> None:
        await self._set_status(ctx, event.order_id, "cancelled", event.reason)

    async def _set_status(
        self, ctx: ProjectionContext, order_id: str, status: str, reason: str | None
    ) -> None:
        table = ctx.shop_orders
        await ctx.connection.execute(
            table.update().where(table.c.order_id == order_id).values(status=status, reason=reason)
        )


class CustomerTotals(Projection):
    """Per customer and currency: orders placed, confirmed and cancelled, money spent.

    Confirmations and cancellations name only the order, so the projection keeps a small
    table of its own from order to customer and total (a read model may own several).
    """

    name = "customer_totals"
    metadata = sa.MetaData()
    totals = sa.Table(
        "shop_customer_totals", metadata,
        sa.Column("customer", sa.Text(), primary_key=True),
        sa.Column("currency", sa.Text(), primary_key=True),
        sa.Column("placed", sa.Integer(), nullable=False),
        sa.Column("confirmed", sa.Integer(), nullable=False),
        sa.Column("cancelled", sa.Integer(), nullable=False),
        sa.Column("spent_cents", sa.BigInteger(), nullable=False),
    )
    orders = sa.Table(
        "shop_customer_orders", metadata,
        sa.Column("order_id", sa.Text(), primary_key=True),
        sa.Column("customer", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
    )

    @handles(OrderPlaced)
    async def _placed(self, event: OrderPlaced, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.shop_customer_orders.insert().values(
            order_id=event.order_id, customer=event.customer, currency=event.currency,
            total_cents=cents(event.total),
        ))
        totals = ctx.shop_customer_totals
        key = (totals.c.customer == event.customer) & (totals.c.currency == event.currency)
        # One holder writes this projection at a time, so read-then-write cannot race.
        found = (await ctx.connection.execute(sa.select(totals.c.placed).where(key))).first()
        if found is None:
            await ctx.connection.execute(totals.insert().values(
                customer=event.customer, currency=event.currency, placed=1, confirmed=0,
                cancelled=0, spent_cents=0,
            ))
        else:
            await ctx.connection.execute(
                totals.update().where(key).values(placed=totals.c.placed + 1)
            )

    @handles(OrderConfirmed)
    async def _confirmed(self, event: OrderConfirmed, ctx: ProjectionContext) -> None:
        totals, customer, currency, total = await self._order(ctx, event.order_id)
        await ctx.connection.execute(
            totals.update()
            .where((totals.c.customer == customer) & (totals.c.currency == currency))
            .values(confirmed=totals.c.confirmed + 1, spent_cents=totals.c.spent_cents + total)
        )

    @handles(OrderCancelled)
    async def _cancelled(self, event: OrderCancelled, ctx: ProjectionContext) -> None:
        totals, customer, currency, _ = await self._order(ctx, event.order_id)
        await ctx.connection.execute(
            totals.update()
            .where((totals.c.customer == customer) & (totals.c.currency == currency))
            .values(cancelled=totals.c.cancelled + 1)
        )

    async def _order(
        self, ctx: ProjectionContext, order_id: str
    ) -> tuple[sa.Table, str, str, int]:
        orders = ctx.shop_customer_orders
        row = (await ctx.connection.execute(
            sa.select(orders.c.customer, orders.c.currency, orders.c.total_cents)
            .where(orders.c.order_id == order_id)
        )).one()
        return ctx.shop_customer_totals, row.customer, row.currency, row.total_cents


# --- queries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRow:
    """A row of the order list."""

    order_id: str
    customer: str
    status: str
    total: Decimal
    currency: str
    reason: str | None
    placed_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerTotal:
    """What one customer ordered and spent in one currency."""

    customer: str
    currency: str
    placed: int
    confirmed: int
    cancelled: int
    spent: Decimal


async def list_orders(
    engine: AsyncEngine, order_ids: Collection[str] | None = None
) -> list[OrderRow]:
    """The order list (of these orders, or all), oldest first."""
    table = OrderList.orders
    query = sa.select(table).order_by(table.c.placed_at, table.c.order_id)
    if order_ids is not None:
        query = query.where(table.c.order_id.in_(sorted(order_ids)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        OrderRow(row.order_id, row.customer, row.status, from_cents(row.total_cents),
                 row.currency, row.reason, row.placed_at)
        for row in rows
    ]


async def customer_totals(
    engine: AsyncEngine, customers: Collection[str] | None = None
) -> list[CustomerTotal]:
    """Per-customer totals (of these customers, or all), by customer and currency."""
    table = CustomerTotals.totals
    query = sa.select(table).order_by(table.c.customer, table.c.currency)
    if customers is not None:
        query = query.where(table.c.customer.in_(sorted(customers)))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        CustomerTotal(row.customer, row.currency, row.placed, row.confirmed, row.cancelled,
                      from_cents(row.spent_cents))
        for row in rows
    ]
