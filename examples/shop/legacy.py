"""What older releases of the shop stored, and how today's release reads it.

Release 1 sold in euros only: its ``OrderPlaced`` (schema version 1) had no ``currency``.
Release 2 added the field and raised the version to 2. Stored events are never rewritten,
so version 1 rows stay in the log; the upcaster below carries each one to version 2 as it
is read, on every read path (aggregates, projections, the process manager, the CLI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eventfold import Event, EventRegistry, EventStore, Upcasters, connect
from eventfold.upcasters import JSONObject
from examples.shop.events import OrderLine


def shop_upcasters() -> Upcasters:
    """The shop's upcasters: one step, ``OrderPlaced`` v1 -> v2."""
    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", 1)
    def price_in_euros(data: JSONObject) -> JSONObject:
        """Release 1 sold in euros only."""
        return {**data, "currency": "EUR"}

    return upcasters


class OrderPlacedV1(Event):
    """``OrderPlaced`` as release 1 wrote it (no currency): used only to write such rows."""

    event_type = "OrderPlaced"
    schema_version = 1

    order_id: str
    customer: str
    lines: tuple[OrderLine, ...]


def release_1_events() -> EventRegistry:
    """The registry release 1 wrote with (only the event this example needs)."""
    return EventRegistry([OrderPlacedV1])


@asynccontextmanager
async def release_1(store: EventStore, url: str) -> AsyncIterator[EventStore]:
    """A store writing as release 1 did, on the database at ``url`` (that of ``store``).

    On PostgreSQL and SQLite it is a second connection, as the old deployment had. The
    memory store lives in this process only, so there the same store writes with release
    1's registry for the duration of the block.
    """
    if url.split(":", 1)[0].lower() != "memory":
        async with connect(url, release_1_events()) as old:
            yield old
        return
    today = store.registry
    store.registry = release_1_events()
    try:
        yield store
    finally:
        store.registry = today
