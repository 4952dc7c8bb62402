"""Release 1's ``OrderPlaced`` (v1, no currency) is read as v2 in euros, on every read path."""

from __future__ import annotations

from decimal import Decimal

import pytest
from shop_support import line, open_shop

from eventfold.app import App
from eventfold.eventstore.causation import correlated
from eventfold.upcasters import MissingUpcaster, Upcasters
from examples.shop.app import build_app
from examples.shop.events import SHOP_EVENTS, OrderPlaced
from examples.shop.legacy import OrderPlacedV1, release_1, shop_upcasters
from examples.shop.order import Order, OrderStatus
from examples.shop.read_models import list_orders


def test_the_upcaster_prices_release_1_orders_in_euros() -> None:
    stored = {"order_id": "1", "customer": "alice", "lines": []}
    assert shop_upcasters().upcast("OrderPlaced", 1, stored) == [
        ("OrderPlaced", 2, {**stored, "currency": "EUR"}),
    ]
    assert "currency" not in stored  # upcasters never change what they are given


def test_the_app_refuses_to_start_without_the_upcaster() -> None:
    build_app().check()
    with pytest.raises(MissingUpcaster, match="OrderPlaced"):
        App(events=SHOP_EVENTS, upcasters=Upcasters())


async def test_an_order_release_1_stored_is_read_and_fulfilled_today(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        store = shop.running.store
        await shop.stock(pen=5)
        async with release_1(store, shop_url) as old:
            with correlated("checkout-old"):
                await old.append("Order-old", [
                    OrderPlacedV1(order_id="old", customer="alice", lines=(line("pen", 2),))
                ])
            [as_stored] = await old.read_stream("Order-old")
        assert (as_stored.schema_version, "currency" in as_stored.data) == (1, False)

        # The store's read paths upcast: a stream read, the global log, type-filtered reads.
        [record] = await store.read_stream("Order-old")
        assert (record.event_type, record.schema_version) == ("OrderPlaced", 2)
        assert store.registry.decode(record) == OrderPlaced(
            order_id="old", customer="alice", lines=(line("pen", 2),), currency="EUR"
        )
        [logged] = await store.read_all(event_types=["OrderPlaced"])
        assert logged.data["currency"] == "EUR"

        # The aggregate, the read model and the fulfilment process see today's shape.
        await shop.settle()
        order = await shop.running.repository.get(Order, "old")
        assert (order.status, order.currency, order.total) == (
            OrderStatus.PLACED, "EUR", Decimal("2.40"),
        )
        [row] = await list_orders(shop.running.engine, ["old"])
        assert (row.currency, row.total, row.status) == ("EUR", Decimal("2.40"), "placed")
        assert (await shop.item("pen")).reservations == {"old": 2}
