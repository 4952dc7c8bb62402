"""Fixtures of the aggregate tests: the sample domain's registry and a store per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aggregate_backends import BACKENDS, migrated_sqlite
from sample_shop import shop_registry

from eventfold.aggregates import Repository
from eventfold.eventstore import EventRegistry, EventStore, connect


@pytest.fixture
def registry() -> EventRegistry:
    """A fresh registry of the sample domain's events."""
    return shop_registry()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL: memory, a migrated SQLite file, and emptied PostgreSQL tables."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path, "aggregates.db")
    url: str = request.getfixturevalue("pg_clean_url")
    return url


@pytest.fixture
async def store(store_url: str, registry: EventRegistry) -> AsyncIterator[EventStore]:
    """An open, empty store of the sample domain on each backend."""
    async with connect(store_url, registry) as store:
        yield store


@pytest.fixture
def repo(store: EventStore) -> Repository:
    """A repository over the store, without snapshots."""
    return Repository(store)
