"""Fixtures of the SQLite tests: a migrated database file per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from eventstore.schema import metadata


def create_schema(url: str) -> None:
    """Create the store's tables in the database at ``url``."""
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a migrated, empty SQLite file."""
    url = f"sqlite:///{tmp_path / 'eventfold.db'}"
    create_schema(url)
    return url
