"""The write side over HTTP: each endpoint loads an aggregate, runs one command, saves.

Commands answer with the aggregate's state after them (its stream version also in the
``ETag`` header). ``If-Match: "<version>"`` runs the command only on that version, else
409: a client that showed a user version 3 never overwrites a change it did not see.
Without it, a command that meets a concurrent write is retried on the fresh state a few
times (``Repository.update``) before the conflict is answered with 409.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import BaseModel

from eventfold import Aggregate, AggregateNotFound, ConcurrencyError, DomainError
from examples.shop.events import OrderLine
from examples.shop.inventory import InventoryItem
from examples.shop.order import Order
from examples.shop_api.errors import UnknownProduct
from examples.shop_api.idempotency import RequestKey, earlier_answer, request_key
from examples.shop_api.schemas import CancelOrder, ItemView, OrderView, PlaceOrder, ReceiveStock
from examples.shop_api.state import Shop, ShopDep

A = TypeVar("A", bound=Aggregate)
V = TypeVar("V", OrderView, ItemView)

commands = APIRouter(tags=["commands"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255,
           description="Any string naming this request once; a retry sends it again."),
]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", pattern=r'^(W/)?"?[0-9]+"?$',
           description='The version the command expects, e.g. "3" (an ETag).'),
]


@commands.post("/orders", status_code=status.HTTP_201_CREATED)
async def place_order(
    body: PlaceOrder, shop: ShopDep, request: Request, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> OrderView:
    """Place an order (``Order.place``); its products must have been stocked once."""
    for line in body.lines:
        if await shop.running.store.stream_version(InventoryItem.stream_id_for(line.sku)) == 0:
            raise UnknownProduct(line.sku)
    lines = [OrderLine(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price)
             for line in body.lines]
    place = partial(Order.place, customer=body.customer, lines=lines, currency=body.currency)
    key = _key(idempotency_key, request, body)
    order = await shop.repository.create(
        Order, body.order_id, place,
        idempotency_key=None if key is None else key.event_id,
        metadata=None if key is None else key.metadata,
    )
    response.headers["Location"] = f"/orders/{order.id}"
    return _answer(OrderView.of(order), response)


@commands.post("/orders/{order_id}/confirm")
async def confirm_order(
    order_id: str, shop: ShopDep, request: Request, response: Response,
    idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
) -> OrderView:
    """Confirm a placed order (``Order.confirm``); confirming it again changes nothing."""
    key = _key(idempotency_key, request, None)
    order = await _update(shop, Order, order_id, Order.confirm, key, _version(if_match))
    return _answer(OrderView.of(order), response)


@commands.post("/orders/{order_id}/cancel")
async def cancel_order(
    order_id: str, body: CancelOrder, shop: ShopDep, request: Request, response: Response,
    idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
) -> OrderView:
    """Cancel a placed order (``Order.cancel``) saying why."""
    key = _key(idempotency_key, request, body)
    cancel = partial(Order.cancel, reason=body.reason)
    order = await _update(shop, Order, order_id, cancel, key, _version(if_match))
    return _answer(OrderView.of(order), response)


@commands.post("/inventory/{sku}/receipts")
async def receive_stock(
    sku: str, body: ReceiveStock, shop: ShopDep, request: Request, response: Response,
    idempotency_key: IdempotencyKey = None, if_match: IfMatch = None,
) -> ItemView:
    """A delivery arrived (``InventoryItem.receive``); the first one creates the product."""
    key = _key(idempotency_key, request, body)
    receive = partial(InventoryItem.receive, quantity=body.quantity)
    expected = _version(if_match)
    try:
        item = await _update(shop, InventoryItem, sku, receive, key, expected)
    except AggregateNotFound:
        item = await shop.repository.create(
            InventoryItem, sku, _guarded(receive, expected),
            idempotency_key=None if key is None else key.event_id,
            metadata=None if key is None else key.metadata,
        )
    return _answer(ItemView.of(item), response)


# --- running a command ------------------------------------------------------------------------


async def _update(
    shop: Shop, cls: type[A], id: str, command: Callable[[A], None], key: RequestKey | None,
    expected: int | None,
) -> A:
    """``Repository.update`` under the request's key and ``If-Match`` version."""
    guarded = _guarded(command, expected)
    if key is None:
        return await shop.repository.update(cls, id, guarded)
    recorded = False

    def tracked(aggregate: A) -> None:
        nonlocal recorded
        guarded(aggregate)
        recorded = bool(aggregate.pending_events)

    try:
        aggregate = await shop.repository.update(
            cls, id, tracked, idempotency_key=key.event_id, metadata=key.metadata
        )
    except (DomainError, ConcurrencyError):
        # Refused now, perhaps because the first request with this key changed the state.
        earlier = await earlier_answer(shop.repository, cls, id, key)
        if earlier is None:
            raise
        return earlier
    if recorded:  # the repository told a retry from a new request by the events' ids
        return aggregate
    return await earlier_answer(shop.repository, cls, id, key) or aggregate


def _guarded(command: Callable[[A], None], expected: int | None) -> Callable[[A], None]:
    """The command, run only on the aggregate at ``expected`` (any version when None)."""

    def run(aggregate: A) -> None:
        if expected is not None and aggregate.version != expected:
            raise ConcurrencyError(aggregate.stream_id, expected, aggregate.version)
        command(aggregate)

    return run


def _key(header: str | None, request: Request, body: BaseModel | None) -> RequestKey | None:
    if header is None:
        return None
    return request_key(header, request.method, request.url.path, body)


def _version(if_match: str | None) -> int | None:
    return None if if_match is None else int(if_match.removeprefix("W/").strip('"'))


def _answer(view: V, response: Response) -> V:
    response.headers["ETag"] = f'"{view.version}"'
    return view
