"""The append statement: versions checked by the unique index alone, plans that stay on the
indexes, writers of ANY that never lose for good, streams listed from the events table, and
pooled connections that other users of the pool still get."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import ANY, STREAM_EXISTS, ConcurrencyError, EventRegistry, NewEvent
from eventfold.eventstore.backends.memory import MemoryEventStore
from eventfold.eventstore.backends.postgres import (
    _APPEND_BATCH,
    _APPEND_ONE,
    _SETTLE,
    PostgresEventStore,
)
from eventfold.eventstore.backends.postgres_group import APPEND_GROUP

from .conftest import Deposited
from .test_races import wait_until_blocked

pytestmark = pytest.mark.postgres

_ARGUMENT_TYPES = {
    _APPEND_ONE: "text, integer, integer, uuid, text, integer, jsonb, jsonb",
    _APPEND_BATCH: "text, integer, integer, uuid[], text[], integer[], jsonb[], jsonb[]",
    APPEND_GROUP: "text[], integer[], integer[], bigint[], integer[], uuid[], text[], "
    "integer[], jsonb[], jsonb[]",
    _SETTLE: "text, uuid[]",
}
_ARGUMENTS = {
    _APPEND_ONE: "'S-1', 0, 0, gen_random_uuid(), 'Deposited', 1, '{}', '{}'",
    _APPEND_BATCH: "'S-1', 0, 0, ARRAY[gen_random_uuid()], ARRAY['Deposited'], ARRAY[1], "
    "ARRAY['{}'::jsonb], ARRAY['{}'::jsonb]",
    APPEND_GROUP: "ARRAY['S-1', 'S-2'], ARRAY[0, 0], ARRAY[0, 0], ARRAY[1, 2], ARRAY[1, 1], "
    "ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['Deposited', 'Deposited'], "
    "ARRAY[1, 1], ARRAY['{}'::jsonb, '{}'::jsonb], ARRAY['{}'::jsonb, '{}'::jsonb]",
    _SETTLE: "'S-1', ARRAY[gen_random_uuid()]",
}


async def _generic_plan(store: PostgresEventStore, query: str) -> str:
    """The plan a session of the store's pool caches for ``query`` after a few runs."""
    async with store.pool.acquire() as conn:
        await conn.execute(f"PREPARE probe({_ARGUMENT_TYPES[query]}) AS {query}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            rows = await conn.fetch(f"EXPLAIN EXECUTE probe({_ARGUMENTS[query]})")
        finally:
            await conn.execute("DEALLOCATE probe; RESET plan_cache_mode")
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("query", list(_ARGUMENT_TYPES), ids=["one", "batch", "group", "settle"])
async def test_generic_plans_made_on_an_empty_table_use_the_indexes_once_appends_grow_it(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, query: str
) -> None:
    # A prepared statement's generic plan is cached after a few runs. Made on an empty,
    # analyzed table it scans the table (the cheapest plan there, and harmless), but it
    # would go on scanning as appends grow the table until autovacuum's next analyze,
    # which looks once a minute. The store analyzes the table itself once its appends
    # grew it tenfold, and every session plans again, on the indexes.
    await raw_conn.execute("ANALYZE eventfold_events")
    assert "Seq Scan" in await _generic_plan(pg_store, query)
    for start in range(0, 1_200, 100):
        await pg_store.append(f"S-{start}", [Deposited(amount=n) for n in range(100)])
    table_rows = "SELECT reltuples FROM pg_class WHERE oid = 'eventfold_events'::regclass"
    async with asyncio.timeout(30):
        while await raw_conn.fetchval(table_rows) < 1_000:  # noqa: ASYNC110 - another session
            await asyncio.sleep(0.05)
    plan = await _generic_plan(pg_store, query)
    assert "Seq Scan" not in plan, plan
    assert "eventfold_events_stream_version" in plan, plan
    if query == _SETTLE:
        assert "eventfold_events_event_id_key" in plan, plan


async def test_an_expected_version_ahead_of_the_stream_writes_nothing(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    for expected in (2, 5):
        with pytest.raises(ConcurrencyError) as caught:
            await pg_store.append("S-1", [Deposited(amount=2)] * 2, expected_version=expected)
        assert (caught.value.expected, caught.value.actual) == (expected, 1)
    assert [e.stream_version for e in await pg_store.read_stream("S-1")] == [1]


async def test_a_replay_with_any_expected_version_returns_the_original(
    pg_store: PostgresEventStore,
) -> None:
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2))]
    original = await pg_store.append("S-1", batch)
    await pg_store.append("S-1", [Deposited(amount=3)])
    # Whatever version the retry expects, the stored batch answers it (no false conflict).
    for expected in (0, 2, 3, 9, ANY, STREAM_EXISTS):
        assert await pg_store.append("S-1", batch, expected_version=expected) == original
    assert await pg_store.stream_version("S-1") == 3


@pytest.mark.parametrize("expected", [ANY, STREAM_EXISTS], ids=["any", "stream_exists"])
async def test_racing_writers_without_an_exact_version_all_succeed(
    pg_store: PostgresEventStore, pg_store_factory: object, expected: object
) -> None:
    # They compute the same next version and collide on the unique index; the losers try
    # again (behind a lock on the stream) until every append is in, in one sequence.
    await pg_store.append("Hot-1", [Deposited(amount=0)])
    stores = [pg_store] + [
        await pg_store_factory() for _ in range(2)  # type: ignore[operator]
    ]
    writers, appends_each = 9, 8

    async def writer(number: int) -> list[int]:
        store = stores[number % len(stores)]
        versions: list[int] = []
        for index in range(appends_each):
            size = 1 + (number + index) % 3
            result = await store.append(
                "Hot-1", [Deposited(amount=number)] * size,
                expected_version=expected,  # type: ignore[arg-type]
            )
            versions.extend(range(result.version - size + 1, result.version + 1))
        return versions

    written = [v for vs in await asyncio.gather(*(writer(n) for n in range(writers))) for v in vs]
    total = 1 + len(written)
    assert sorted(written) == list(range(2, total + 1))
    events = await pg_store.read_stream("Hot-1")
    assert [e.stream_version for e in events] == list(range(1, total + 1))
    assert await pg_store.stream_version("Hot-1") == total


stream_ids = st.lists(
    st.sampled_from(["Cart", "Cart-", "Cart-1", "Cart-10", "Cart-2", "Cart!x", "Cart.a",
                     "Cart-é", "Carts-1", "Order-1", "Order", "a-b-c", "x", "-x", "-"]),
    min_size=0, max_size=8, unique=True,
)


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ids=stream_ids,
    category=st.sampled_from([None, "Cart", "Order", "a", "a-b", "Carts", "x", "Z", ""]),
    after=st.sampled_from([None, "", "Cart", "Cart-", "Cart-1", "Cart.", "Order", "zzz"]),
    limit=st.integers(0, 4),
)
async def test_list_streams_pages_like_the_memory_store(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection,
    ids: list[str], category: str | None, after: str | None, limit: int,
) -> None:
    await raw_conn.execute("TRUNCATE eventfold_events")
    reference = MemoryEventStore(pg_store.registry)
    for number, stream_id in enumerate(ids):
        events = [NewEvent(Deposited(amount=number))] * 1 if number % 2 else [
            NewEvent(Deposited(amount=number)), NewEvent(Deposited(amount=-number))
        ]
        await pg_store.append(stream_id, events)
        await reference.append(stream_id, events)
    got = await pg_store.list_streams(category=category, after=after, limit=limit)
    want = await reference.list_streams(category=category, after=after, limit=limit)
    assert [(s.stream_id, s.version) for s in got] == [(s.stream_id, s.version) for s in want]


async def test_listing_a_stream_reports_its_last_append(pg_store: PostgresEventStore) -> None:
    await pg_store.append("Cart-1", [Deposited(amount=1)])
    last = await pg_store.append("Cart-1", [Deposited(amount=2)])
    [info] = await pg_store.list_streams(category="Cart")
    [event] = await pg_store.read_stream("Cart-1", from_version=last.version)
    assert (info.version, info.updated_at) == (2, event.recorded_at)


async def test_busy_writers_leave_pool_connections_for_others(
    pg_store_factory: object, pg_registry: EventRegistry
) -> None:
    store: PostgresEventStore = await pg_store_factory(  # type: ignore[operator]
        min_size=2, max_size=2
    )
    stop = asyncio.Event()

    async def writer(number: int) -> int:
        appended = 0
        while not stop.is_set():
            await store.append(f"Busy-{number}", [Deposited(amount=appended)])
            appended += 1
        return appended

    writing = [asyncio.create_task(writer(n)) for n in range(2)]
    try:
        # Both connections are in use by writers appending in a loop; another user of the
        # pool still gets one, as soon as a writer's statement ends.
        for _ in range(3):
            async with asyncio.timeout(30):
                async with store.pool.acquire() as conn:
                    assert await conn.fetchval("SELECT 1") == 1
    finally:
        stop.set()
        appended = await asyncio.gather(*writing)
    assert all(count > 0 for count in appended)
    for number, count in enumerate(appended):
        assert await store.stream_version(f"Busy-{number}") == count


async def test_a_cancelled_append_leaves_a_usable_store(
    pg_store: PostgresEventStore, pg_clean_url: str, raw_conn: asyncpg.Connection
) -> None:
    blocker = await asyncpg.connect(pg_clean_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE eventfold_events IN SHARE MODE")
        stuck = asyncio.create_task(pg_store.append("S-1", [Deposited(amount=1)]))
        await wait_until_blocked(raw_conn, blocker.get_server_pid())
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        await tx.rollback()
    finally:
        await blocker.close()
    event_id = uuid.uuid4()
    result = await pg_store.append("S-1", [NewEvent(Deposited(amount=2), event_id=event_id)])
    assert result.version == 1
    assert [e.event_id for e in await pg_store.read_stream("S-1")] == [event_id]
