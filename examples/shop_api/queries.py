"""The read side over HTTP: one order from its stream, the rest from the read models.

``GET /orders/{order_id}`` folds the order's stream, so it is current the moment a
command returns. The order list and the customer totals come from the projections,
which trail the log by the runner's lag; ``?consistent=true`` first waits (up to
``CONSISTENT_READ_TIMEOUT`` seconds) until they have handled every event committed
before the request: read-your-writes for a client that just sent a command.
"""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Response

from examples.shop.order import Order
from examples.shop.read_models import OrderList, customer_totals, from_cents
from examples.shop_api.errors import ReadModelsBehind, UnknownCustomer
from examples.shop_api.schemas import (
    CurrencyTotal,
    CustomerTotalsView,
    OrderListItem,
    OrderPage,
    OrderView,
)
from examples.shop_api.state import Shop, ShopDep

CONSISTENT_READ_TIMEOUT = 5.0
"""How long a ``consistent=true`` read waits for the read models before answering 503."""

queries = APIRouter(tags=["queries"])

Consistent = Annotated[
    bool, Query(description="Wait until the read models caught up with the log first.")
]


@queries.get("/orders/{order_id}")
async def get_order(order_id: str, shop: ShopDep, response: Response) -> OrderView:
    """One order as its stream says now; 404 when it was never placed."""
    view = OrderView.of(await shop.repository.get(Order, order_id))
    response.headers["ETag"] = f'"{view.version}"'
    return view


@queries.get("/orders")
async def list_orders(
    shop: ShopDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    consistent: Consistent = False,
) -> OrderPage:
    """A page of the ``OrderList`` read model, oldest order first."""
    if consistent:
        await _catch_up(shop)
    table = OrderList.orders
    query = (
        sa.select(table).order_by(table.c.placed_at, table.c.order_id)
        .offset(offset).limit(limit + 1)  # one more than asked: is there a next page?
    )
    async with shop.running.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    items = [
        OrderListItem(
            order_id=row.order_id, customer=row.customer, status=row.status,
            total=from_cents(row.total_cents), currency=row.currency, reason=row.reason,
            placed_at=row.placed_at,
        )
        for row in rows[:limit]
    ]
    more = len(rows) > limit
    return OrderPage(items=items, offset=offset, limit=limit,
                     next_offset=offset + limit if more else None)


@queries.get("/customers/{customer}/totals")
async def get_customer_totals(
    customer: str, shop: ShopDep, consistent: Consistent = False
) -> CustomerTotalsView:
    """What the customer ordered and spent, per currency (``CustomerTotals``)."""
    if consistent:
        await _catch_up(shop)
    totals = await customer_totals(shop.running.engine, [customer])
    if not totals:
        raise UnknownCustomer(customer)
    return CustomerTotalsView(
        customer=customer, totals=[CurrencyTotal.of(total) for total in totals]
    )


async def _catch_up(shop: Shop) -> None:
    names = [projection.name for projection in shop.running.app.projections]
    head = await shop.running.store.committed_head()
    try:
        await shop.runner.wait_until(head, timeout=CONSISTENT_READ_TIMEOUT, names=names)
    except TimeoutError as exc:
        raise ReadModelsBehind(str(exc)) from exc
