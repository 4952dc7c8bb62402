"""The one place where errors become HTTP answers.

    ConcurrencyError, AggregateExists   409  the stream moved on, or the order exists
    DomainError                         422  a business rule refused the command
    IdempotencyKeyReused,
    DuplicateEventId                    422  the key already stands for another request
    UnknownProduct                      422  an order names a product never stocked
    AggregateNotFound, UnknownCustomer  404  no such order, product or customer
    ReadModelsBehind                    503  a consistent read timed out; retry later

FastAPI answers bad input (wrong types, missing fields) with its own 422. Every other
body is ``{"error": <type>, "detail": <message>}``; the messages come from the errors,
which say what was wrong and what to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from eventfold import AggregateNotFound, ConcurrencyError, DomainError, EventfoldError
from eventfold.aggregates import AggregateExists
from eventfold.eventstore import DuplicateEventId
from examples.shop_api.schemas import ErrorBody


class ShopApiError(EventfoldError):
    """Base of the errors the HTTP layer itself raises."""


class IdempotencyKeyReused(ShopApiError):
    """An ``Idempotency-Key`` came back with another request than the one it first named."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request (another "
            "method, path or body): send a new key for a new request, the same request "
            "to retry"
        )


class UnknownProduct(ShopApiError):
    """An order names a product the warehouse never received."""

    def __init__(self, sku: str) -> None:
        self.sku = sku
        super().__init__(
            f"product {sku!r} is not in the inventory: receive stock for it first "
            f"(POST /inventory/{sku}/receipts) or check the SKU"
        )


class UnknownCustomer(ShopApiError):
    """The customer totals have no row for this customer."""

    def __init__(self, customer: str) -> None:
        self.customer = customer
        super().__init__(
            f"customer {customer!r} has no orders in the read model: check the name, or ask "
            "again with ?consistent=true if the order was placed just now"
        )


class ReadModelsBehind(ShopApiError):
    """A read asked for ``consistent=true`` and the read models did not catch up in time."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the read models are behind the event log ({reason}): retry later")


STATUS: tuple[tuple[type[Exception], int], ...] = (
    (ConcurrencyError, 409),
    (AggregateExists, 409),
    (IdempotencyKeyReused, 422),
    (DuplicateEventId, 422),
    (UnknownProduct, 422),
    (DomainError, 422),
    (AggregateNotFound, 404),
    (UnknownCustomer, 404),
    (ReadModelsBehind, 503),
)
"""Each error type the API maps and its status code."""


def install_error_handlers(api: FastAPI) -> None:
    """Answer each mapped error with its status and a JSON ``ErrorBody``."""
    for error_type, status in STATUS:
        api.add_exception_handler(error_type, _handler(status))


def _handler(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def answer(request: Request, exc: Exception) -> Response:
        body = ErrorBody(error=type(exc).__name__, detail=_detail(exc))
        return JSONResponse(body.model_dump(), status_code=status)

    return answer


def _detail(exc: Exception) -> str:
    if isinstance(exc, DuplicateEventId):
        # The store's words speak of event ids; the client sent an Idempotency-Key.
        return (
            f"the Idempotency-Key (event id {exc.event_id}) was already used for a "
            "different request: send a new key for a new request, the same request to retry"
        )
    return str(exc)
