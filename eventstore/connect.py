"""``connect(url)``: the one place that picks a backend from a URL."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventfold.eventstore.errors import StoreUnavailable
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.registry import EventRegistry

DEFAULT_URL = "sqlite:///eventfold.db"
"""The embedded default: a SQLite file in the working directory."""


def masked(url: str) -> str:
    """The URL with its password replaced by ``***``, safe to print and log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


class connect:
    """Open the event store at ``url``: ``store = await connect(url, registry)`` or
    ``async with connect(url, registry) as store:`` (which closes it on exit).

    ``postgresql://user@host/db`` uses asyncpg, ``sqlite:///path.db`` uses aiosqlite
    (``sqlite://`` alone is an in-memory SQLite database), ``memory://`` keeps events in
    this process. Raises ``StoreUnavailable`` when the database cannot be reached and
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
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from eventfold.eventstore.backends.memory import MemoryEventStore

        return MemoryEventStore(registry, url)
    if scheme in {"postgresql", "postgres", "postgresql+asyncpg"}:
        from eventfold.eventstore.backends.postgres import PostgresEventStore

        return await PostgresEventStore.open(url, registry, **options)
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        from eventfold.eventstore.backends.sqlite import SqliteEventStore

        return await SqliteEventStore.open(url, registry, **options)
    raise StoreUnavailable(
        masked(url), "not a database URL eventfold knows: use postgresql://, sqlite:/// or memory://"
    )
