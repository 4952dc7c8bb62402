"""The checkout: an order placed and its payment reserved as one unit of work.

The web application's one write per checkout: ``Order.place`` and ``Payment.request`` on
two new aggregates, saved with ``Repository.save(order, payment)`` - one ``append_streams``
transaction, so the log never holds an order without its payment request or a payment
request without its order, whatever fails or crashes in between.
"""

from __future__ import annotations

from collections.abc import Iterable

from eventfold import Repository
from eventfold.eventstore import AppendResult
from examples.shop.events import OrderLine
from examples.shop.order import Order
from examples.shop.payment import Payment


async def check_out(
    repository: Repository,
    order_id: str,
    customer: str,
    lines: Iterable[OrderLine],
    currency: str = "EUR",
) -> tuple[Order, list[AppendResult | None]]:
    """Place the order and request its payment (the order's total) in one transaction.

    A domain error (an empty order, a bad line, nothing to pay) writes neither. An order id
    in use raises ``StreamsConflict`` (a ``ConcurrencyError``) and writes neither. Returns
    the order and the two appends' results (they share one transaction).
    """
    order, payment = Order(order_id), Payment(order_id)
    order.place(customer, lines, currency)
    payment.request(order.total, order.currency)
    return order, await repository.save(order, payment)
