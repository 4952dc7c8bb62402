"""Fixtures of the SQLite tests: a migrated database file per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventfold.eventstore.migrate import migrate


@pytest.fixture
async def db_url(tmp_path: Path) -> str:
    """The URL of an empty SQLite file migrated to the head revision."""
    url = f"sqlite:///{tmp_path / 'eventfold.db'}"
    await migrate(url)
    return url
