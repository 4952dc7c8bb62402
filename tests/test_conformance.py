"""Every backend passes the one behavioural suite of eventfold.eventstore.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventfold.eventstore import EventStore, connect
from eventfold.eventstore.testing import EventStoreConformance, conformance_registry


class TestMemoryStore(EventStoreConformance):
    """The reference backend."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        async with connect("memory://", conformance_registry()) as store:
            yield store


class TestPostgresStore(EventStoreConformance):
    """The production backend, on a real server (tests/conftest.py)."""

    @pytest.fixture
    async def store(self, pg_clean_url: str) -> AsyncIterator[EventStore]:
        async with connect(pg_clean_url, conformance_registry()) as store:
            yield store
