"""``eventfold migrate`` and ``eventfold repair-horizon`` on SQLite."""

from __future__ import annotations

import asyncio

from cli_support import Invoke

from eventfold.eventstore.migrate import SCHEMA_HEAD, schema_revision


def test_migrate_creates_the_schema_then_has_nothing_to_do(
    invoke: Invoke, sqlite_url: str
) -> None:
    first = invoke("--database", sqlite_url, "migrate")
    assert first.exit_code == 0, first.stderr
    assert f"migrated {sqlite_url} from revision (empty) to {SCHEMA_HEAD} (head)" in first.stdout
    assert asyncio.run(schema_revision(sqlite_url)) == SCHEMA_HEAD

    again = invoke("--database", sqlite_url, "migrate")
    assert again.exit_code == 0, again.stderr
    assert f"already at revision {SCHEMA_HEAD}" in again.stdout


def test_after_migrate_the_store_is_usable(invoke: Invoke, sqlite_url: str) -> None:
    assert invoke("--database", sqlite_url, "migrate").exit_code == 0
    listed = invoke("--database", sqlite_url, "streams", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "no streams in" in listed.stdout


def test_repair_horizon_has_nothing_to_do_off_postgres(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "repair-horizon")
    assert result.exit_code == 0, result.stderr
    assert "nothing to repair" in result.stdout and "not PostgreSQL" in result.stdout
