"""``eventstore/schema.py`` says truthfully what the migrations create, on each dialect:
Alembic's ``compare_metadata`` against a freshly migrated database finds no difference."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from eventfold.eventstore.engine import sqlalchemy_url
from eventfold.eventstore.migrate import VERSION_TABLE, migrate
from eventfold.eventstore.schema import exists_on, metadata


async def differences(url: str) -> list[Any]:
    engine = create_async_engine(sqlalchemy_url(url))

    def compare(conn: sa.Connection) -> list[Any]:
        dialect = conn.dialect.name

        def include(obj: object, name: str | None, type_: str, *_: object) -> bool:
            return name != VERSION_TABLE and exists_on(obj, dialect)

        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        with warnings.catch_warnings():
            # Reflection knows neither xid8 (PostgreSQL) nor SQLite's expression indexes;
            # both are compared by the migrations' own tests.
            warnings.simplefilter("ignore")
            return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def test_a_migrated_sqlite_database_is_what_the_schema_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'drift.db'}"
    await migrate(url)
    assert await differences(url) == []


@pytest.mark.postgres
async def test_a_migrated_postgresql_database_is_what_the_schema_says(pg_fresh_url: str) -> None:
    assert await differences(pg_fresh_url) == []
