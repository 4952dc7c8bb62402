"""The command line on a real PostgreSQL server: migrate, inspect, follow, repair the horizon."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from cli_support import Invoke, append_cart_events, json_lines, one_error_line

from eventfold.cli.execution import EXIT_HORIZON, EXIT_NOT_MIGRATED
from eventfold.eventstore.migrate import SCHEMA_HEAD

pytestmark = pytest.mark.postgres


def test_migrate_then_use_a_new_database(invoke: Invoke, empty_pg_url: str) -> None:
    before = invoke("--database", empty_pg_url, "streams", "list")
    assert before.exit_code == EXIT_NOT_MIGRATED
    assert "run `eventfold migrate" in one_error_line(before)

    migrated = invoke("--database", empty_pg_url, "migrate")
    assert migrated.exit_code == 0, migrated.stderr
    assert f"to {SCHEMA_HEAD} (head)" in migrated.stdout
    again = invoke("--database", empty_pg_url, "migrate")
    assert f"already at revision {SCHEMA_HEAD}" in again.stdout

    append_cart_events(empty_pg_url)
    listed = invoke("--database", empty_pg_url, "streams", "list", "--json")
    assert [(r["stream_id"], r["version"]) for r in json_lines(listed.stdout)] == [
        ("Cart-1", 3), ("Cart-2", 1), ("Wishlist-9", 1),
    ]
    shown = invoke("--database", empty_pg_url, "streams", "show", "Cart-1", "--json")
    assert [r["data"].get("sku") for r in json_lines(shown.stdout)] == [None, "tea", "cup"]
    table = invoke("--database", empty_pg_url, "streams", "show", "Cart-1")
    assert table.exit_code == 0 and "ItemAdded v1" in table.stdout

    tailed = invoke("--database", empty_pg_url, "events", "tail", "--from-start", "--count",
                    "5", "--json")
    rows = json_lines(tailed.stdout)
    assert [r["stream_id"] for r in rows] == ["Cart-1"] * 3 + ["Cart-2", "Wishlist-9"]
    assert [(r["transaction_id"], r["position"]) for r in rows] == sorted(
        (r["transaction_id"], r["position"]) for r in rows
    )


def test_a_restored_store_is_refused_until_repair_horizon(
    invoke: Invoke, empty_pg_url: str
) -> None:
    assert invoke("--database", empty_pg_url, "migrate").exit_code == 0
    append_cart_events(empty_pg_url)
    healthy = invoke("--database", empty_pg_url, "repair-horizon")
    assert healthy.exit_code == 0 and "nothing to repair" in healthy.stdout

    async def restore_from_a_cluster_far_ahead() -> None:
        conn = await asyncpg.connect(empty_pg_url)
        try:
            await conn.execute(
                "UPDATE eventfold_events SET transaction_id = "
                "(transaction_id::text::bigint + 5000000)::text::xid8"
            )
        finally:
            await conn.close()

    asyncio.run(restore_from_a_cluster_far_ahead())
    refused = invoke("--database", empty_pg_url, "streams", "list")
    assert refused.exit_code == EXIT_HORIZON
    assert f"eventfold repair-horizon --database {empty_pg_url}" in one_error_line(refused)

    repaired = invoke("--database", empty_pg_url, "repair-horizon")
    assert repaired.exit_code == 0, repaired.stderr
    assert "renumbered 5 events of 4 transactions" in repaired.stdout

    after = invoke("--database", empty_pg_url, "events", "tail", "--from-start", "--count", "5",
                   "--json")
    assert after.exit_code == 0, after.stderr
    assert len(json_lines(after.stdout)) == 5
