"""Fixtures of the PostgreSQL-only tests: their events, and raw connections beside the store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from eventstore import Event, EventRegistry


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
