"""The SQLite store, on a file and in memory, passes the shared behavioural suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventfold.eventstore import EventStore, connect
from eventfold.eventstore.testing import EventStoreConformance, conformance_registry


class TestSqliteFileStore(EventStoreConformance):
    """A store in a file, as the embedded default runs."""

    @pytest.fixture
    async def store(self, db_url: str) -> AsyncIterator[EventStore]:
        async with connect(db_url, conformance_registry()) as store:
            yield store


class TestSqliteMemoryStore(EventStoreConformance):
    """``sqlite://``: one in-memory database for the store's lifetime."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        async with connect("sqlite://", conformance_registry()) as store:
            yield store
