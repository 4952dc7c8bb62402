"""Migrations ship in the package, record their own revision, and go up and down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from eventfold.eventstore.migrate import (
    SCHEMA_HEAD,
    VERSION_TABLE,
    downgrade,
    migrate,
    schema_revision,
    script_head,
)

from .test_failures import scratch_url

pytestmark = pytest.mark.postgres

__all__ = ["scratch_url"]  # the fixture, imported for these tests


def test_schema_head_is_the_scripts_head() -> None:
    assert script_head() == SCHEMA_HEAD


async def test_postgres_up_down_up(scratch_url: str) -> None:
    assert await schema_revision(scratch_url) is None
    # Two processes starting at once take turns instead of racing on CREATE TABLE.
    await asyncio.gather(migrate(scratch_url), migrate(scratch_url))
    assert await schema_revision(scratch_url) == SCHEMA_HEAD
    conn = await asyncpg.connect(scratch_url)
    try:
        tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {VERSION_TABLE, "eventfold_events"} <= tables
        # Appends check versions on the events table's unique index alone (SQLite only
        # keeps a streams table).
        assert "eventfold_streams" not in tables
        assert "alembic_version" not in tables  # a user's own Alembic table stays theirs
        column = await conn.fetchrow(
            "SELECT data_type, column_default FROM information_schema.columns "
            "WHERE table_name = 'eventfold_events' AND column_name = 'transaction_id'"
        )
        assert (column[0], column[1]) == ("xid8", "pg_current_xact_id()")
        await downgrade(scratch_url, "base")
        assert await schema_revision(scratch_url) is None
        assert not await conn.fetchval("SELECT to_regclass('eventfold_events') IS NOT NULL")
        await migrate(scratch_url)
        assert await conn.fetchval("SELECT to_regclass('eventfold_events') IS NOT NULL")
    finally:
        await conn.close()


async def test_sqlite_up_down_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert await schema_revision(url) is None
    await migrate(url)
    assert await schema_revision(url) == SCHEMA_HEAD
    await migrate(url)  # again: nothing to do
    await downgrade(url, "base")
    assert await schema_revision(url) is None
    await migrate(url, SCHEMA_HEAD)
    assert await schema_revision(url) == SCHEMA_HEAD
