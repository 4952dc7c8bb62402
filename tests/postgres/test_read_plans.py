"""The store's reads end on their indexes, and its sessions keep the server's settings.

A read statement is prepared, one round trip, and after a few runs PostgreSQL caches its
generic plan. A plan made while the events table is empty or small is, by cost, a
sequential scan (harmless there); it must not stay cached while the table grows. The
store analyzes the table once its own appends grew it tenfold, which makes every session
plan again: these tests plan every read statement as a session of the store caches it,
on a table its appends grew and on a large analyzed one. A Sort node would mean the
statement's ORDER BY does not match the index it walks.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventfold.eventstore.backends.postgres import (
    _COMMITTED_HEAD,
    _HEAD,
    _LIST_ALL_STREAMS,
    _LIST_STREAMS_BELOW,
    _READ_ALL,
    _READ_ALL_OF_PARTITION,
    _READ_ALL_OF_TYPES,
    _READ_BACKWARDS,
    _READ_CORRELATION,
    _READ_EVENT,
    _READ_FOR_FOLD,
    _READ_FORWARDS,
    _STREAM_HEAD,
    _STREAM_VERSION,
    PostgresEventStore,
)
from eventfold.eventstore.backends.postgres_lifecycle import SCAVENGE_COUNT, SCAVENGE_EVENTS

from .conftest import Deposited
from .test_races import wait_until_blocked

pytestmark = pytest.mark.postgres

# Each read statement: its argument types, sample arguments, and the index it must use.
_STREAM_INDEX = "eventfold_events_stream_version"
_LOG_INDEX = "eventfold_events_log_order"
_READS = {
    "read_stream": (_READ_FORWARDS, "text, integer, integer, timestamptz, integer",
                    "'S-7', 1, 2147483647, NULL, NULL", _STREAM_INDEX),
    "read_stream_backwards": (_READ_BACKWARDS, "text, integer, integer, timestamptz, integer",
                              "'S-7', 2147483647, 1, NULL, 10", _STREAM_INDEX),
    "read_typed_stream": (_READ_FOR_FOLD, "text, integer, integer, timestamptz",
                          "'S-7', 1, 2147483647, NULL", _STREAM_INDEX),
    "stream_version": (_STREAM_VERSION, "text", "'S-7'", _STREAM_INDEX),
    "stream_head": (_STREAM_HEAD, "text", "'S-7'", _STREAM_INDEX),
    "list_streams": (_LIST_ALL_STREAMS, "text, integer", "'', 100", _STREAM_INDEX),
    "list_streams_of_category": (_LIST_STREAMS_BELOW, "text, integer, text",
                                 "'S-', 100, 'S.'", _STREAM_INDEX),
    "read_all": (_READ_ALL, "text, bigint, integer", "'0', 0, 1000", _LOG_INDEX),
    "read_all_of_types": (_READ_ALL_OF_TYPES, "text, bigint, integer, text[]",
                          "'0', 0, 1000, ARRAY['Deposited']", _LOG_INDEX),
    "read_all_of_partition": (_READ_ALL_OF_PARTITION,
                              "text, bigint, integer, text[], integer, integer",
                              "'0', 0, 1000, NULL, 4, 1", _LOG_INDEX),
    "read_all_of_partition_and_types": (_READ_ALL_OF_PARTITION,
                                        "text, bigint, integer, text[], integer, integer",
                                        "'0', 0, 1000, ARRAY['Deposited'], 4, 1", _LOG_INDEX),
    "head": (_HEAD, "", "", _LOG_INDEX),
    "committed_head": (_COMMITTED_HEAD, "", "", _LOG_INDEX),
    "read_event": (_READ_EVENT, "uuid", "gen_random_uuid()", "eventfold_events_event_id_key"),
    "read_correlation": (_READ_CORRELATION, "text, uuid", "'c-1', gen_random_uuid()",
                         "eventfold_events_correlation"),
    "scavenge_count": (SCAVENGE_COUNT, "text, integer, integer", "'S-7', 1, 50",
                       _STREAM_INDEX),
    "scavenge_events": (SCAVENGE_EVENTS, "text, integer, integer", "'S-7', 50, 1000",
                        _STREAM_INDEX),
}


async def _fill(conn: asyncpg.Connection, events: int) -> None:
    """``events`` events over 100 streams, then ANALYZE (as autoanalyze would)."""
    await conn.execute(
        """
        INSERT INTO eventfold_events
            (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
        SELECT 'S-' || (g % 100), g / 100 + 1, gen_random_uuid(), 'Deposited', 1,
               '{"amount": 1}', '{}'
        FROM generate_series(0, $1 - 1) AS g
        """,
        events,
    )
    await conn.execute("ANALYZE eventfold_events")


async def _prepare(conn: asyncpg.Connection) -> None:
    """Prepare every read statement on ``conn``, each under its name in ``_READS``."""
    for name, (query, types, _, _) in _READS.items():
        await conn.execute(f"PREPARE {name}{f'({types})' if types else ''} AS {query}")


async def _off_their_indexes(conn: asyncpg.Connection) -> dict[str, str]:
    """The statements prepared on ``conn`` whose cached generic plan misses its index."""
    wrong = {}
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        for name, (_, _, args, index) in _READS.items():
            rows = await conn.fetch(f"EXPLAIN EXECUTE {name}{f'({args})' if args else ''}")
            plan = "\n".join(row[0] for row in rows)
            scans = [line for line in plan.splitlines() if "eventfold_events" in line]
            if (
                not any(index in line for line in scans)
                or any("Seq Scan" in line for line in scans)
                # A deleted or truncated stream's row is probed by its primary key.
                or "Seq Scan on eventfold_stream_lifecycle" in plan
                or ("Sort" in plan and name != "read_correlation")  # a trace sorts a few rows
            ):
                wrong[name] = plan
    finally:
        await conn.execute("RESET plan_cache_mode")
    return wrong


async def test_every_read_uses_its_index_on_a_large_analyzed_table(
    raw_conn: asyncpg.Connection,
) -> None:
    await _fill(raw_conn, 20_000)
    await _prepare(raw_conn)
    wrong = await _off_their_indexes(raw_conn)
    assert not wrong, "\n\n".join(f"{name}:\n{plan}" for name, plan in wrong.items())


async def test_plans_cached_on_an_empty_table_use_the_indexes_once_appends_grow_it(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    # Generic plans cached on the empty, analyzed table scan it (the cheapest plan there).
    # Once the store's appends grew the table tenfold, its ANALYZE makes every session
    # plan the same prepared statements again, on the indexes.
    await raw_conn.execute("ANALYZE eventfold_events")
    await _prepare(raw_conn)
    assert await _off_their_indexes(raw_conn), "an empty table is planned with scans"
    for stream in range(120):
        await pg_store.append(f"S-{stream}", [Deposited(amount=n) for n in range(10)])
    table_rows = "SELECT reltuples FROM pg_class WHERE oid = 'eventfold_events'::regclass"
    async with asyncio.timeout(30):
        while await raw_conn.fetchval(table_rows) < 1_000:  # noqa: ASYNC110 - another session
            await asyncio.sleep(0.05)
    wrong = await _off_their_indexes(raw_conn)
    assert not wrong, "\n\n".join(f"{name}:\n{plan}" for name, plan in wrong.items())


async def test_the_store_sessions_keep_the_server_planner_settings(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.read_stream("S-1")
    async with pg_store.pool.acquire() as conn:
        settings = dict(await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name LIKE 'enable%' "
            "OR name IN ('plan_cache_mode', 'random_page_cost', 'seq_page_cost')"
        ))
        defaults = dict(await conn.fetch(
            "SELECT name, boot_val FROM pg_settings WHERE name LIKE 'enable%' "
            "OR name IN ('plan_cache_mode', 'random_page_cost', 'seq_page_cost')"
        ))
        in_transaction = conn.is_in_transaction()
    assert settings == defaults
    assert not in_transaction


async def _sessions_in_transaction(watcher: asyncpg.Connection) -> int:
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventfold' "
        "AND state LIKE 'idle in transaction%'"
    )
    return count


async def _blocked_read(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, watcher: asyncpg.Connection
) -> asyncio.Task[object]:
    """A read of the store waiting behind ``raw_conn``'s lock on the events table."""
    await raw_conn.execute("BEGIN; LOCK TABLE eventfold_events IN ACCESS EXCLUSIVE MODE")
    task: asyncio.Task[object] = asyncio.create_task(pg_store.read_stream("S-1"))
    await wait_until_blocked(watcher, raw_conn.get_server_pid())
    return task


async def test_a_read_the_server_cancels_leaves_no_session_in_a_transaction(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    watcher = await asyncpg.connect(pg_clean_url)
    try:
        task = await _blocked_read(pg_store, raw_conn, watcher)
        await watcher.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
            "WHERE $1 = ANY(pg_blocking_pids(pid))", raw_conn.get_server_pid(),
        )
        with pytest.raises(asyncpg.QueryCanceledError):
            await task
        await raw_conn.execute("ROLLBACK")

        assert await _sessions_in_transaction(watcher) == 0
        assert [e.stream_version for e in await pg_store.read_stream("S-1")] == [1]
    finally:
        await watcher.close()


async def test_a_cancelled_read_leaves_no_session_in_a_transaction(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    watcher = await asyncpg.connect(pg_clean_url)
    try:
        task = await _blocked_read(pg_store, raw_conn, watcher)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await raw_conn.execute("ROLLBACK")

        assert await _sessions_in_transaction(watcher) == 0
        assert [e.stream_version for e in await pg_store.read_stream("S-1")] == [1]
    finally:
        await watcher.close()
