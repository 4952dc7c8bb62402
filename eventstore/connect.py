"""``connect(url)``: the one place that picks a backend from a URL."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from eventfold.eventstore.errors import SchemaNotMigrated
from eventfold.eventstore.migrate import SCHEMA_HEAD
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.urls import (
    masked,
    parse_database_url,
    scheme_of,
    sqlite_file,
    unsupported_scheme,
)

DEFAULT_URL = "sqlite:///eventfold.db"
"""The embedded default: a SQLite file in the working directory."""


class connect:
    """Open the event store at ``url``: ``store = await connect(url, registry)`` or
    ``async with connect(url, registry) as store:`` (which closes it on exit).

    ``postgresql://user@host/db`` uses asyncpg, ``sqlite:///path.db`` uses aiosqlite
    (``sqlite://`` alone is an in-memory SQLite database), ``memory://`` keeps events in
    this process. Raises ``StoreUnavailable`` when the database cannot be reached (its
    subclass ``InvalidDatabaseURL`` when the URL is not one of those) and
    ``SchemaNotMigrated`` when ``eventfold migrate`` has not been run.
    """

    def __init__(
        self, url: str = DEFAULT_URL, registry: EventRegistry | None = None, **options: Any
    ) -> None:
        self.url = url
        self.registry = registry if registry is not None else EventRegistry()
        self.options = options
        self._store: EventStore | None = None

    def __await__(self) -> Generator[Any, None, EventStore]:
        return _open(self.url, self.registry, self.options).__await__()

    async def __aenter__(self) -> EventStore:
        self._store = await _open(self.url, self.registry, self.options)
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        if self._store is not None:
            await self._store.close()


async def _open(url: str, registry: EventRegistry, options: dict[str, Any]) -> EventStore:
    scheme = scheme_of(url)
    if scheme == "memory":
        from eventfold.eventstore.backends.memory import MemoryEventStore

        return MemoryEventStore(registry, url)
    if scheme in {"postgresql", "postgres"}:
        parse_database_url(url)  # a malformed URL fails here, with its secrets masked
        from eventfold.eventstore.backends.postgres import PostgresEventStore

        return await PostgresEventStore.open(url, registry, **options)
    if scheme == "sqlite":
        from eventfold.eventstore.backends.sqlite import SqliteEventStore

        _check_sqlite_file(url)
        return await SqliteEventStore.open(url, registry, **options)
    raise unsupported_scheme(url)


def _check_sqlite_file(url: str) -> None:
    """Refuse a SQLite file that does not exist, before SQLite creates it empty: a store
    needs the tables ``eventfold migrate`` creates, so a missing file is a store not
    migrated yet (or a typo), and opening it would leave an empty file behind."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise SchemaNotMigrated(masked(url), None, SCHEMA_HEAD)
