"""Fixtures of the process-manager tests: a store and an engine on its database, per backend.

``env`` runs a test on a SQLite file and on a real PostgreSQL database (emptied first); the
memory store is left out because restarts and a second process need a durable database.
``any_env`` adds the memory store, for tests that need neither.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from saga_support import Env, make_registry
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """The store and engine of one backend, empty and migrated."""
    async for opened in _open(request, tmp_path):
        yield opened


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def any_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """``env`` on the memory store too, for tests that need no restart."""
    async for opened in _open(request, tmp_path):
        yield opened


async def _open(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    kind: str = request.param
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        await migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    if kind == "postgres":
        await empty_tables(engine)
    store = await connect(url, make_registry())
    try:
        yield Env(kind, url, store, engine)
    finally:
        await store.close()
        await engine.dispose()


async def empty_tables(engine: AsyncEngine) -> None:
    """Empty every eventfold table of the session's PostgreSQL database."""
    async with engine.begin() as conn:
        names = (await conn.execute(sa.text(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eventfold\\_%' AND tablename <> 'eventfold_alembic_version'"
        ))).scalars().all()
        await conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
