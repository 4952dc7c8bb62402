"""The store's reads stay on their indexes, and its sessions keep the server's settings.

A read statement is prepared, and after a few runs PostgreSQL caches its generic plan. A
plan made while the events table was empty or small is, by cost, a sequential scan (and a
sort), and it would stay cached while the table grows: every read would then scan the
whole table. Each read therefore runs in a short transaction of its own with sequential
scans off (``postgres._ON_INDEXES``), and these tests plan every read statement as the
store runs it, as the cached generic plan, on an empty, a small and a large analyzed table.
A Sort node would mean the statement's ORDER BY does not match the index it walks.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventfold.eventstore.backends.postgres import (
    _COMMITTED_HEAD,
    _HEAD,
    _LIST_ALL_STREAMS,
    _ON_INDEXES,
    _READ_ALL,
    _READ_ALL_OF_PARTITION,
    _READ_ALL_OF_TYPES,
    _READ_BACKWARDS,
    _READ_CORRELATION,
    _READ_EVENT,
    _READ_FORWARDS,
    _STREAM_HEAD,
    _STREAM_VERSION,
    PostgresEventStore,
)

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
    "stream_version": (_STREAM_VERSION, "text", "'S-7'", _STREAM_INDEX),
    "stream_head": (_STREAM_HEAD, "text", "'S-7'", _STREAM_INDEX),
    "list_streams": (_LIST_ALL_STREAMS, "text, integer", "'', 100", _STREAM_INDEX),
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
}
_SIZES = {"empty": 0, "small": 100, "large": 20_000}


async def _fill(conn: asyncpg.Connection, events: int) -> None:
    """``events`` events over 100 streams, then ANALYZE (as autoanalyze would)."""
    if events:
        await conn.execute(
            """
            INSERT INTO eventfold_events
                (stream_id, stream_version, event_id, event_type, schema_version, data,
                 metadata)
            SELECT 'S-' || (g % 100), g / 100 + 1, gen_random_uuid(), 'Deposited', 1,
                   '{"amount": 1}', '{}'
            FROM generate_series(0, $1 - 1) AS g
            """,
            events,
        )
    await conn.execute("ANALYZE eventfold_events")


async def _cached_plan(
    conn: asyncpg.Connection, query: str, types: str, args: str
) -> str:
    """The generic plan the server caches for ``query`` when the store runs it."""
    await conn.execute(f"PREPARE probe{f'({types})' if types else ''} AS {query}")
    try:
        await conn.execute(_ON_INDEXES)
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = await conn.fetch(f"EXPLAIN EXECUTE probe{f'({args})' if args else ''}")
        await conn.execute("COMMIT")
    finally:
        await conn.execute("DEALLOCATE probe")
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("size", list(_SIZES))
async def test_every_read_uses_its_index_on_an_empty_a_small_and_a_large_table(
    raw_conn: asyncpg.Connection, size: str
) -> None:
    await _fill(raw_conn, _SIZES[size])
    wrong = {}
    for name, (query, types, args, index) in _READS.items():
        plan = await _cached_plan(raw_conn, query, types, args)
        scans = [line for line in plan.splitlines() if "eventfold_events" in line]
        if (
            not any(index in line for line in scans)
            or any("Seq Scan" in line for line in scans)
            or ("Sort" in plan and name != "read_correlation")  # a trace sorts its few rows
        ):
            wrong[name] = plan
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


async def test_a_read_the_server_cancels_ends_its_transaction(
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


async def test_a_cancelled_read_leaves_no_session_in_its_transaction(
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
