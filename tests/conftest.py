"""Shared fixtures.

PostgreSQL: tests get a real server, never a mock, and never skip for want of one. The DSN
comes from ``EVENTFOLD_TEST_DATABASE_URL`` (CI: ``postgresql://postgres@127.0.0.1:5432/test``);
without it a throwaway server is started with the machine's pg_ctl (tests/pg_throwaway.py).
Each test session works in a fresh database of its own (random name, migrated, dropped at
the end), so engineers and CI runs sharing a server never see each other's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.abc
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import psycopg
import pytest
from layout_support import BARE_PACKAGE_NAMES
from pg_throwaway import NoServer, throwaway_server
from sqlalchemy.engine import make_url

from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.registry import EventRegistry

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

TEST_DATABASE_ENV = "EVENTFOLD_TEST_DATABASE_URL"

HOW_TO_GET_POSTGRES = (
    f"PostgreSQL tests need a server: set {TEST_DATABASE_ENV} to a DSN whose user may create "
    "databases (e.g. postgresql://postgres@127.0.0.1:5432/test), or install PostgreSQL "
    "(apt-get install postgresql) so the tests can start a throwaway server with its pg_ctl."
)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, in a thread with its own event loop
    (session fixtures must not touch the loops pytest-asyncio manages)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A DSN of a PostgreSQL server whose user may create databases."""
    configured = os.environ.get(TEST_DATABASE_ENV)
    if configured:
        yield configured
        return
    try:
        with throwaway_server() as url:
            yield url
    except NoServer as exc:
        pytest.fail(f"could not start a throwaway PostgreSQL: {exc}. {HOW_TO_GET_POSTGRES}",
                    pytrace=False)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server (random name), dropped on exit."""
    name = f"eventfold_test_{uuid.uuid4().hex[:12]}"
    server = make_url(server_url)
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.fail(
            f"cannot create a test database on {server.render_as_string()}: {exc}. "
            f"{HOW_TO_GET_POSTGRES}",
            pytrace=False,
        )
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """The URL of a fresh database for this test session, migrated to the head."""
    with fresh_database(pg_server_url) as url:
        run_async(migrate(url))
        yield url


@pytest.fixture
def pg_fresh_url(pg_server_url: str) -> Iterator[str]:
    """A database of this test's own, migrated to the head (dropped after the test)."""
    with fresh_database(pg_server_url) as url:
        run_async(migrate(url))
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
