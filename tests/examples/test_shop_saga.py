"""The fulfilment process, path by path, on memory, SQLite and PostgreSQL.

Each test runs the shop's real App with its runner: orders are placed through the
repository, the provider's answers recorded as the story records them, and timeouts fired
with ``DeadlinePoller.fire_due(now=...)`` instead of waiting a quarter of an hour.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from shop_support import line, open_shop

from eventfold.eventstore import StreamsConflict
from eventfold.processes import list_deadlines
from examples.shop.checkout import check_out
from examples.shop.events import OrderLine
from examples.shop.order import Order, OrderStatus
from examples.shop.payment import InvalidAmount, Payment, PaymentNotPending, PaymentStatus


async def test_a_paid_order_is_confirmed_and_its_timeout_cancelled(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(book=10, pen=40)
        await shop.place("o1", "alice", line("book", 2), line("pen", 1))

        assert (await shop.item("book")).reservations == {"o1": 2}
        assert (await shop.item("pen")).available == 39
        payment = await shop.running.repository.get(Payment, "o1")
        assert (payment.status, payment.amount) == (PaymentStatus.REQUESTED, Decimal("26.20"))
        [deadline] = await list_deadlines(shop.running.engine, manager="fulfilment")
        assert (deadline.key, deadline.status) == ("o1", "scheduled")

        await shop.answer("o1", lambda p: p.charge("ch_1"))

        assert (await shop.running.repository.get(Order, "o1")).status is OrderStatus.CONFIRMED
        assert (await shop.instance("o1")).status == "completed"
        [deadline] = await list_deadlines(shop.running.engine, manager="fulfilment")
        assert deadline.status == "cancelled"
        assert await shop.fire(timedelta(hours=1)) == 0  # a cancelled timeout never fires
        assert (await shop.item("book")).reservations == {"o1": 2}  # kept for shipping


async def test_a_declined_payment_releases_the_stock_and_cancels(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(mug=3)
        await shop.place("o2", "bob", line("mug", 1))
        await shop.answer("o2", lambda p: p.fail("card declined"))

        instance = await shop.instance("o2")
        assert (instance.status, instance.reason) == (
            "compensated", "payment failed: card declined",
        )
        assert await shop.types("InventoryItem-mug") == [
            "StockReceived", "StockReserved", "StockReleased",
        ]
        assert (await shop.item("mug")).available == 3
        order = await shop.running.repository.get(Order, "o2")
        assert order.status is OrderStatus.CANCELLED
        # The failed payment needs no voiding: the compensation records nothing there.
        assert await shop.types("Payment-o2") == ["PaymentRequested", "PaymentFailed"]


async def test_no_answer_in_15_minutes_undoes_every_step_newest_first(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(book=10, pen=40)
        await shop.place("o3", "carol", line("book", 1), line("pen", 2))

        assert await shop.fire(timedelta(minutes=14)) == 0  # not yet
        assert (await shop.instance("o3")).status == "active"
        assert await shop.fire(timedelta(minutes=16)) == 1

        instance = await shop.instance("o3")
        assert (instance.status, instance.reason) == (
            "compensated", "no payment within 15 minutes",
        )
        undone = [
            (record.stream_id, record.event_type)
            for record in await shop.running.store.read_all()
            if record.event_type in ("PaymentVoided", "StockReleased", "OrderCancelled")
        ]
        assert undone == [
            ("Payment-o3", "PaymentVoided"),
            ("InventoryItem-pen", "StockReleased"),
            ("InventoryItem-book", "StockReleased"),
            ("Order-o3", "OrderCancelled"),
        ]
        assert (await shop.item("book")).available == 10
        assert (await shop.item("pen")).available == 40
        with pytest.raises(PaymentNotPending, match="voided: a charge is no longer accepted"):
            await shop.answer("o3", lambda p: p.charge("ch_late"))
        assert await shop.fire(timedelta(hours=2)) == 0  # fired once, never again


async def test_out_of_stock_reserves_no_line_and_asks_no_payment(shop_url: str) -> None:
    """The lines' reservations and the payment request are one unit of work: the short
    mug line keeps the book line's reservation and the payment request from being written,
    so there is nothing to release."""
    async with open_shop(shop_url) as shop:
        await shop.stock(book=10, mug=2)
        await shop.place("o4", "dave", line("book", 1), line("mug", 5))

        instance = await shop.instance("o4")
        assert instance.status == "compensated"
        assert instance.reason == "out of stock: 5 x mug wanted, 2 available"
        assert await shop.types("InventoryItem-book") == ["StockReceived"]
        assert await shop.types("InventoryItem-mug") == ["StockReceived"]
        assert await shop.running.store.stream_version("Payment-o4") == 0
        assert await list_deadlines(shop.running.engine, manager="fulfilment") == []
        assert await shop.types("Order-o4") == ["OrderPlaced", "OrderCancelled"]


async def test_commands_of_the_process_carry_the_order_s_causation(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(mug=3)
        await shop.place("o5", "bob", line("mug", 1))
        [placed] = await shop.running.store.read_stream("Order-o5")
        [_, reserved] = await shop.running.store.read_stream("InventoryItem-mug")
        [requested] = await shop.running.store.read_stream("Payment-o5")
        for caused in (reserved, requested):
            assert caused.metadata["causation_id"] == str(placed.event_id)
            assert caused.metadata["correlation_id"] == str(placed.event_id)


async def test_the_timeout_is_durable_it_fires_after_a_restart(durable_shop_url: str) -> None:
    url = durable_shop_url
    async with open_shop(url) as shop:
        await shop.stock(book=10)
        await shop.place("o6", "carol", line("book", 3))
    # Everything above is closed: a new process, a new App, the same database.
    async with open_shop(url) as shop:
        assert (await shop.item("book")).available == 7
        assert await shop.fire(timedelta(minutes=16)) == 1
        assert (await shop.item("book")).available == 10
        assert await shop.types("Order-o6") == ["OrderPlaced", "OrderCancelled"]


async def test_a_checkout_places_the_order_and_reserves_its_payment_in_one_transaction(
    shop_url: str,
) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(book=10)
        _, saved = await check_out(shop.running.repository, "o6", "erin", [line("book", 2)])
        placed, requested = saved
        assert placed is not None and requested is not None
        assert placed.transaction_id == requested.transaction_id
        await shop.settle()

        # The fulfilment reserved the stock and found the payment asked for already.
        assert await shop.types("Payment-o6") == ["PaymentRequested"]
        assert (await shop.item("book")).reservations == {"o6": 2}
        await shop.answer("o6", lambda p: p.charge("ch_6"))
        assert (await shop.running.repository.get(Order, "o6")).status is OrderStatus.CONFIRMED


async def test_a_refused_or_repeated_checkout_writes_neither_stream(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        free = OrderLine(sku="book", quantity=1, unit_price=Decimal(0))
        with pytest.raises(InvalidAmount):  # the payment refuses: the order is not placed
            await check_out(shop.running.repository, "o7", "erin", [free])
        assert await shop.running.store.stream_version("Order-o7") == 0
        assert await shop.running.store.stream_version("Payment-o7") == 0

        await shop.stock(book=10)
        await shop.check_out("o8", "erin", line("book", 1))
        head = await shop.running.store.committed_head()
        with pytest.raises(StreamsConflict):  # the order id is taken: nothing is written
            await check_out(shop.running.repository, "o8", "frank", [line("book", 3)])
        assert await shop.running.store.committed_head() == head


async def test_out_of_stock_after_a_checkout_voids_its_payment(shop_url: str) -> None:
    async with open_shop(shop_url) as shop:
        await shop.stock(book=10, mug=2)
        await shop.check_out("o9", "dave", line("book", 1), line("mug", 5))

        instance = await shop.instance("o9")
        assert (instance.status, instance.reason) == (
            "compensated", "out of stock: 5 x mug wanted, 2 available",
        )
        assert await shop.types("InventoryItem-book") == ["StockReceived"]
        assert await shop.types("Payment-o9") == ["PaymentRequested", "PaymentVoided"]
        assert await shop.types("Order-o9") == ["OrderPlaced", "OrderCancelled"]
