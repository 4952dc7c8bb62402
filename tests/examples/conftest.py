"""Fixtures of the example's tests: the shop on memory, a SQLite file and PostgreSQL.

The example applications live outside the installed packages, in ``examples/`` at the
root of the repository; they are imported from there, as ``python -m examples.shop`` does.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eventfold.eventstore.engine import create_engine  # noqa: E402 - after the path is set
from eventfold.eventstore.migrate import migrate  # noqa: E402
from examples.shop.app import build_app  # noqa: E402


async def empty_store_tables(url: str) -> None:
    """Empty eventfold's tables (events, checkpoints, process states...) of a PostgreSQL
    database, as ``pg_clean_url`` does."""
    conn = await asyncpg.connect(url)
    try:
        names = [row[0] for row in await conn.fetch(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'eventfold\\_%' AND tablename <> 'eventfold_alembic_version'"
        )]
        await conn.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def drop_shop_tables(url: str) -> None:
    """Drop the shop's read-model tables: ``pg_clean_url`` empties only eventfold's own, and
    the read models of an earlier test would otherwise outlive its log."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for projection in build_app().projections:
                await conn.run_sync(projection.metadata.drop_all)
    finally:
        await engine.dispose()


@pytest.fixture
async def shop_pg_url(pg_clean_url: str) -> AsyncIterator[str]:
    """The session's PostgreSQL database, emptied of events and of the shop's read models."""
    await drop_shop_tables(pg_clean_url)
    yield pg_clean_url


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def shop_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated store of each backend."""
    return await _empty_store(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
async def durable_shop_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated store of each backend that outlives the process."""
    return await _empty_store(request.param, request, tmp_path)


async def _empty_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
        await migrate(url)
        return url
    # pg_url, not pg_clean_url: an async fixture cannot be requested from a running loop.
    url = str(request.getfixturevalue("pg_url"))
    await empty_store_tables(url)
    await drop_shop_tables(url)
    return url
