"""Fixtures of the projection tests: a store and an engine on its database, per backend.

``env`` runs each test on the memory store (read models in in-memory SQLite), a SQLite file
and a real PostgreSQL database (``pg_url``, emptied); read-model tables are dropped first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from projection_support import Env, drop_read_models, empty_postgres_tables, make_registry

from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """The store and engine of one backend, empty."""
    kind: str = request.param
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        await migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    await drop_read_models(engine)
    if kind == "postgres":
        await empty_postgres_tables(engine)
    store = await connect(url, make_registry())
    try:
        yield Env(kind, url, store, engine)
    finally:
        await store.close()
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Like ``env`` but only the backends with a database of their own (concurrency)."""
    kind: str = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        await migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    await drop_read_models(engine)
    if kind == "postgres":
        await empty_postgres_tables(engine)
    if kind == "postgres":
        await empty_postgres_tables(engine)
    store = await connect(url, make_registry())
    try:
        yield Env(kind, url, store, engine)
    finally:
        await store.close()
        await engine.dispose()
