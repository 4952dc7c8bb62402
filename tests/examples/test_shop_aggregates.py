"""The shop's aggregates, specified with given/when/then (``eventfold.aggregates.scenario``).

Every scenario checks its events against the shop's registry, and round-trips them
through JSON as the store would.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from shop_support import line

from eventfold.aggregates import scenario
from examples.shop.app import build_app
from examples.shop.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    PaymentCharged,
    PaymentFailed,
    PaymentRequested,
    PaymentVoided,
    StockReceived,
    StockReleased,
    StockReserved,
)
from examples.shop.inventory import (
    AlreadyReserved,
    InsufficientStock,
    InvalidQuantity,
    InventoryItem,
)
from examples.shop.order import (
    EmptyOrder,
    InvalidLine,
    Order,
    OrderAlreadyPlaced,
    OrderNotPending,
    OrderStatus,
)
from examples.shop.payment import (
    InvalidAmount,
    Payment,
    PaymentAlreadyRequested,
    PaymentNotPending,
    PaymentStatus,
)

REGISTRY = build_app().registry

PLACED = OrderPlaced(
    order_id="7", customer="alice", lines=(line("book", 2), line("pen", 1)), currency="EUR"
)


# --- Order ----------------------------------------------------------------------------------


def test_an_order_is_placed_with_its_lines_and_total() -> None:
    placed = (
        scenario(Order, "7", registry=REGISTRY)
        .when(lambda o: o.place("alice", [line("book", 2), line("pen", 1)]))
        .then(PLACED)
    )
    assert (placed.status, placed.total, placed.currency) == (
        OrderStatus.PLACED, Decimal("26.20"), "EUR",
    )


@pytest.mark.parametrize(
    ("lines", "error", "match"),
    [
        ([], EmptyOrder, "no lines"),
        ([line("book", 0)], InvalidLine, "quantities are positive"),
        ([line("book", 1), line("book", 2)], InvalidLine, "names a product twice"),
    ],
)
def test_an_order_needs_valid_lines(
    lines: list[OrderLine], error: type[Exception], match: str
) -> None:
    scenario(Order, "7", registry=REGISTRY).when(
        lambda o: o.place("alice", lines)
    ).then_raises(error, match)


def test_an_order_is_placed_once() -> None:
    scenario(Order, "7", registry=REGISTRY).given(PLACED).when(
        lambda o: o.place("bob", [line("mug", 1)])
    ).then_raises(OrderAlreadyPlaced)


def test_a_placed_order_is_confirmed_once() -> None:
    spec = scenario(Order, "7", registry=REGISTRY).given(PLACED)
    spec.when(lambda o: o.confirm()).then(OrderConfirmed(order_id="7"))
    spec.given(OrderConfirmed(order_id="7")).when(lambda o: o.confirm()).then_nothing()


def test_a_confirmed_order_is_never_cancelled() -> None:
    scenario(Order, "7", registry=REGISTRY).given(PLACED, OrderConfirmed(order_id="7")).when(
        lambda o: o.cancel("changed my mind")
    ).then_raises(OrderNotPending, "refunded instead")


def test_cancelling_twice_records_once_and_a_cancelled_order_is_never_confirmed() -> None:
    cancelled = scenario(Order, "7", registry=REGISTRY).given(
        PLACED, OrderCancelled(order_id="7", reason="out of stock")
    )
    cancelled.when(lambda o: o.cancel("again")).then_nothing()
    cancelled.when(lambda o: o.confirm()).then_raises(OrderNotPending, "cannot be confirmed")


def test_an_order_never_placed_cannot_be_cancelled() -> None:
    scenario(Order, "7", registry=REGISTRY).when(lambda o: o.cancel("x")).then_raises(
        OrderNotPending
    )


# --- InventoryItem --------------------------------------------------------------------------

RECEIVED = StockReceived(sku="mug", quantity=3)


def test_stock_is_reserved_while_available() -> None:
    item = scenario(InventoryItem, "mug", registry=REGISTRY).given(RECEIVED).when(
        lambda i: i.reserve("o1", 2)
    ).then(StockReserved(sku="mug", order_id="o1", quantity=2))
    assert (item.on_hand, item.available, item.reservations) == (3, 1, {"o1": 2})


def test_cannot_reserve_more_than_available() -> None:
    error = scenario(InventoryItem, "mug", registry=REGISTRY).given(
        RECEIVED, StockReserved(sku="mug", order_id="o1", quantity=2)
    ).when(lambda i: i.reserve("o2", 2)).then_raises(InsufficientStock)
    assert (error.wanted, error.available) == (2, 1)
    assert str(error) == "2 x mug wanted, 1 available"


def test_an_order_reserves_a_product_once() -> None:
    scenario(InventoryItem, "mug", registry=REGISTRY).given(
        RECEIVED, StockReserved(sku="mug", order_id="o1", quantity=1)
    ).when(lambda i: i.reserve("o1", 1)).then_raises(AlreadyReserved)


@pytest.mark.parametrize("quantity", [0, -1])
def test_stock_moves_in_positive_quantities(quantity: int) -> None:
    spec = scenario(InventoryItem, "mug", registry=REGISTRY).given(RECEIVED)
    spec.when(lambda i: i.reserve("o1", quantity)).then_raises(InvalidQuantity)
    spec.when(lambda i: i.receive(quantity)).then_raises(InvalidQuantity)


def test_releasing_gives_the_reservation_back_and_is_safe_to_repeat() -> None:
    reserved = scenario(InventoryItem, "mug", registry=REGISTRY).given(
        RECEIVED, StockReserved(sku="mug", order_id="o1", quantity=2)
    )
    item = reserved.when(lambda i: i.release("o1")).then(
        StockReleased(sku="mug", order_id="o1", quantity=2)
    )
    assert item.available == 3
    reserved.given(StockReleased(sku="mug", order_id="o1", quantity=2)).when(
        lambda i: i.release("o1")
    ).then_nothing()


def test_restocking_tops_up_to_the_level_and_no_further() -> None:
    spec = scenario(InventoryItem, "mug", registry=REGISTRY).given(
        RECEIVED, StockReserved(sku="mug", order_id="o1", quantity=2)
    )
    spec.when(lambda i: i.restock_to(3)).then(StockReceived(sku="mug", quantity=2))
    spec.when(lambda i: i.restock_to(1)).then_nothing()


def test_inventory_items_snapshot_every_20_events() -> None:
    assert InventoryItem.snapshot_every == 20


# --- Payment --------------------------------------------------------------------------------

REQUESTED = PaymentRequested(order_id="7", amount=Decimal("26.20"), currency="EUR")


def test_a_payment_is_requested_once_for_a_positive_amount() -> None:
    spec = scenario(Payment, "7", registry=REGISTRY)
    spec.when(lambda p: p.request(Decimal("26.20"), "EUR")).then(REQUESTED)
    spec.when(lambda p: p.request(Decimal(0), "EUR")).then_raises(InvalidAmount)
    spec.given(REQUESTED).when(lambda p: p.request(Decimal(1), "EUR")).then_raises(
        PaymentAlreadyRequested
    )


def test_the_provider_answers_a_requested_payment_once() -> None:
    requested = scenario(Payment, "7", registry=REGISTRY).given(REQUESTED)
    charged = requested.when(lambda p: p.charge("ch_1")).then(
        PaymentCharged(order_id="7", reference="ch_1")
    )
    assert (charged.status, charged.reference) == (PaymentStatus.CHARGED, "ch_1")
    requested.when(lambda p: p.fail("card declined")).then(
        PaymentFailed(order_id="7", reason="card declined")
    )
    requested.given(PaymentCharged(order_id="7", reference="ch_1")).when(
        lambda p: p.fail("too late")
    ).then_raises(PaymentNotPending)


def test_a_voided_payment_refuses_a_late_charge() -> None:
    requested = scenario(Payment, "7", registry=REGISTRY).given(REQUESTED)
    requested.when(lambda p: p.void("no payment within 15 minutes")).then(
        PaymentVoided(order_id="7", reason="no payment within 15 minutes")
    )
    requested.given(PaymentVoided(order_id="7", reason="timeout")).when(
        lambda p: p.charge("ch_late")
    ).then_raises(PaymentNotPending, "refund the customer")


def test_voiding_is_a_no_op_after_a_failure_and_refused_after_a_charge() -> None:
    requested = scenario(Payment, "7", registry=REGISTRY).given(REQUESTED)
    requested.given(PaymentFailed(order_id="7", reason="declined")).when(
        lambda p: p.void("cancelled")
    ).then_nothing()
    requested.given(PaymentCharged(order_id="7", reference="ch_1")).when(
        lambda p: p.void("cancelled")
    ).then_raises(PaymentNotPending, "refund it")
