"""Fixtures of the command-line tests: a runner, SQLite files and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cli_support import Invoke, append_cart_events
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from eventfold import migrate
from eventfold.cli import app


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run ``eventfold ARGS...`` in this process; stdout and stderr kept apart."""
    # The environment of the test run must not choose the database for the CLI under test.
    monkeypatch.delenv("EVENTFOLD_DATABASE_URL", raising=False)
    monkeypatch.delenv("EVENTFOLD_APP", raising=False)
    monkeypatch.delenv("EVENTFOLD_READ_MODELS_URL", raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture
def seeded_url(sqlite_url: str) -> str:
    """A migrated SQLite store holding Cart-1 (3 events), Cart-2 (1) and Wishlist-9 (1)."""
    asyncio.run(migrate(sqlite_url))
    append_cart_events(sqlite_url)
    return sqlite_url


@pytest.fixture
def empty_pg_url(pg_server_url: str) -> Iterator[str]:
    """A new database with no tables at all, dropped after the test."""
    name = f"eventfold_cli_{uuid.uuid4().hex[:12]}"
    server = make_url(pg_server_url).set(drivername="postgresql")
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
