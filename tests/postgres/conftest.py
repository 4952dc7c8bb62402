"""Fixtures of the PostgreSQL-only tests: their events, and raw connections beside the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventfold.eventstore import Event, EventRegistry, GlobalPosition
from eventfold.eventstore.backends.postgres import PostgresEventStore


class Deposited(Event):
    """Money came in."""

    amount: int


class Withdrawn(Event):
    """Money went out."""

    amount: int


class Noted(Event):
    """Free text, for data the database may reject."""

    text: str


@pytest.fixture
def pg_registry() -> EventRegistry:
    """The events these tests append."""
    return EventRegistry([Deposited, Withdrawn, Noted])


@pytest.fixture
async def raw_conn(pg_clean_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the test database, beside the store's pool."""
    conn = await asyncpg.connect(pg_clean_url)
    yield conn
    await conn.close()


async def wait_visible(
    store: PostgresEventStore, position: GlobalPosition, timeout: float = 60.0
) -> None:
    """Until readers can see ``position``.

    The horizon is cluster-wide: on a server shared with other work (engineers' test runs),
    someone else's open transaction may hold readers back for a while.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (head := await store.head()) < position:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"{position} never became visible; head is {head}")
        await store.wait_for_events(head, timeout=remaining)
