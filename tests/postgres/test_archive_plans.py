"""The archive's statements end on their indexes, on a large analyzed events table and
archive: an archive costs index probes of the stream, never a scan of either table."""

from __future__ import annotations

import asyncpg
import pytest

from eventfold.eventstore.backends import postgres_archive

pytestmark = pytest.mark.postgres

_STATEMENTS = {
    "hot_versions": (postgres_archive.HOT_VERSIONS, "text", "'S-7'"),
    "move": (postgres_archive.MOVE, "text, integer, integer", "'S-7', 1, 50"),
    "read_stream_archive": (postgres_archive.READ_STREAM, "text", "'S-7'"),
    "read_all_archive": (postgres_archive.READ_ALL, "text, bigint, integer", "'0', 0, 1000"),
}


async def _fill(conn: asyncpg.Connection) -> None:
    """20,000 events over 100 streams, the older half of each stream archived; ANALYZE."""
    await conn.execute(
        """
        INSERT INTO eventfold_events
            (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
        SELECT 'S-' || (g % 100), g / 100 + 1, gen_random_uuid(), 'Deposited', 1,
               '{"amount": 1}', '{}'
        FROM generate_series(0, 19999) AS g
        """
    )
    await conn.execute(
        """
        WITH moved AS (
            DELETE FROM eventfold_events WHERE stream_version <= 100 RETURNING *
        )
        INSERT INTO eventfold_events_archive SELECT * FROM moved
        """
    )
    await conn.execute("ANALYZE eventfold_events")
    await conn.execute("ANALYZE eventfold_events_archive")


async def test_every_archive_statement_uses_the_indexes(raw_conn: asyncpg.Connection) -> None:
    await _fill(raw_conn)
    wrong = {}
    await raw_conn.execute("SET plan_cache_mode = force_generic_plan")
    for name, (query, types, args) in _STATEMENTS.items():
        await raw_conn.execute(f"PREPARE {name}({types}) AS {query}")
        rows = await raw_conn.fetch(f"EXPLAIN EXECUTE {name}({args})")
        plan = "\n".join(row[0] for row in rows)
        scans = [line for line in plan.splitlines() if " on eventfold_events" in line]
        if not scans or any("Seq Scan" in line for line in scans):
            wrong[name] = plan
    assert not wrong, "\n\n".join(f"{name}:\n{plan}" for name, plan in wrong.items())
