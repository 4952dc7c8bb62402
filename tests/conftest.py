"""Shared fixtures.

PostgreSQL: tests get a real server, never a mock, and never skip for want of one. The DSN
comes from ``EVENTFOLD_TEST_DATABASE_URL`` (CI: ``postgresql://postgres@127.0.0.1:5432/test``);
without it a throwaway server is started with the machine's pg_ctl (eventfold/testing/postgres.py).
Each test session works in a fresh database of its own (random name, migrated, dropped at
the end), so engineers and CI runs sharing a server never see each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.abc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
from kafka_broker import KAFKA_URL, TansuBroker, require_kafka
from layout_support import BARE_PACKAGE_NAMES

from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.registry import EventRegistry
from eventfold.testing.postgres import NoServer, create_database, drop_database, server_url

T = TypeVar("T")


class _BareNameGuard(importlib.abc.MetaPathFinder):
    """Refuses ``import eventstore`` and the like: installed, those folders exist only as
    ``eventfold.eventstore`` and so on, so a bare import that works here (the repository's
    root is on ``sys.path``) would break for every user."""

    def find_spec(self, fullname: str, *_: object) -> None:
        if fullname.split(".")[0] in BARE_PACKAGE_NAMES:
            raise ImportError(
                f"import eventfold.{fullname}, not {fullname}: the distribution installs only "
                "the import name eventfold"
            )


sys.meta_path.insert(0, _BareNameGuard())

def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, in a thread with its own event loop
    (session fixtures must not touch the loops pytest-asyncio manages)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A DSN of a PostgreSQL server whose user may create databases."""
    try:
        with server_url() as url:
            yield url
    except NoServer as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def migrated_database(server: str) -> Iterator[str]:
    """A fresh database on ``server``, migrated to the head, dropped on exit."""
    try:
        url = run_async(create_database(server))
    except NoServer as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        run_async(migrate(url))
        yield url
    finally:
        run_async(drop_database(url))


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The URL of a fresh database for this test session, migrated to the head."""
    with migrated_database(pg_server_url) as url:
        yield url


@pytest.fixture
def pg_fresh_url(pg_server_url: str) -> Iterator[str]:
    """A database of this test's own, migrated to the head (dropped after the test)."""
    with migrated_database(pg_server_url) as url:
        yield url


async def truncate_store_tables(url: str) -> None:
    """Empty every eventfold table (not the migration version) and restart identities."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eventfold\\_%' AND tablename <> 'eventfold_alembic_version'"
        )
        if tables:
            names = ", ".join(row[0] for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pg_clean_url(pg_url: str) -> str:
    """``pg_url`` with every eventfold table emptied for this test."""
    await truncate_store_tables(pg_url)
    return pg_url


@pytest.fixture
def pg_registry() -> EventRegistry:
    """The registry ``pg_store`` uses; override it in a test module to register events."""
    return EventRegistry()


PgStoreFactory = Callable[..., Awaitable[PostgresEventStore]]


@pytest.fixture
async def pg_store_factory(
    pg_clean_url: str, pg_registry: EventRegistry
) -> AsyncIterator[PgStoreFactory]:
    """Open more stores on the test database (closed after the test):
    ``await pg_store_factory(registry=None, **open_options)``."""
    opened: list[PostgresEventStore] = []

    async def open_store(
        registry: EventRegistry | None = None, **options: Any
    ) -> PostgresEventStore:
        store = await PostgresEventStore.open(
            pg_clean_url, registry if registry is not None else pg_registry, **options
        )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


@pytest.fixture
async def pg_store(pg_store_factory: PgStoreFactory) -> PostgresEventStore:
    """A PostgreSQL event store on empty tables, with ``pg_registry``."""
    return await pg_store_factory()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture ``postgres``."""
    for item in items:
        if "pg_server_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)



@pytest.fixture(scope="session")
def kafka_url() -> Iterator[str]:
    """EVENTFOLD_TEST_KAFKA_URL's Kafka, else a Tansu broker started for the session (the
    test fails with how to get one when neither can be had)."""
    if KAFKA_URL:
        require_kafka(KAFKA_URL)
        yield KAFKA_URL
        return
    broker = TansuBroker()
    broker.start()
    try:
        yield broker.url
    finally:
        broker.stop()


def pytest_report_header() -> str:
    """Which Kafka the Kafka tests use."""
    return (
        f"kafka: EVENTFOLD_TEST_KAFKA_URL={KAFKA_URL}" if KAFKA_URL
        else "kafka: Tansu, started by the tests (set EVENTFOLD_TEST_KAFKA_URL for a real Kafka)"
    )
