"""What goes wrong around a PostgreSQL store is said clearly, and retrying is safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventfold.eventstore import (
    EventRegistry,
    GlobalPosition,
    NewEvent,
    SchemaNotMigrated,
    StoreUnavailable,
    TransactionHorizonError,
    connect,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.horizon import advance_transaction_counter, repair_horizon
from eventfold.eventstore.migrate import SCHEMA_HEAD, migrate, schema_revision

from .conftest import Deposited, wait_visible
from .test_races import raw_append, wait_until_blocked

pytestmark = pytest.mark.postgres


@pytest.fixture
async def scratch_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh, empty database (no eventfold schema), dropped after the test."""
    name = f"eventfold_scratch_{uuid.uuid4().hex[:10]}"
    server = make_url(pg_server_url).set(drivername="postgresql")
    admin = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_unreachable_server_is_unavailable_without_the_password(
    pg_registry: EventRegistry,
) -> None:
    url = "postgresql://eventfold:s3cret-pw@127.0.0.1:1/nowhere"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresEventStore.open(url, pg_registry)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
    assert caught.value.url == "postgresql://eventfold:***@127.0.0.1:1/nowhere"
    with pytest.raises(StoreUnavailable):
        await connect(url, pg_registry)


async def test_missing_database_is_unavailable(
    pg_server_url: str, pg_registry: EventRegistry
) -> None:
    url = make_url(pg_server_url).set(database="eventfold_no_such_db").render_as_string(False)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await PostgresEventStore.open(url, pg_registry)


async def test_unmigrated_schema_is_refused_until_migrated(
    scratch_url: str, pg_registry: EventRegistry
) -> None:
    with pytest.raises(SchemaNotMigrated) as caught:
        await PostgresEventStore.open(scratch_url, pg_registry)
    assert (caught.value.current, caught.value.expected) == (None, SCHEMA_HEAD)
    assert "eventfold migrate" in str(caught.value)
    await migrate(scratch_url)
    async with await PostgresEventStore.open(scratch_url, pg_registry) as store:
        await store.append("S-1", [Deposited(amount=1)])
    conn = await asyncpg.connect(scratch_url)
    try:
        await conn.execute("UPDATE eventfold_alembic_version SET version_num = '9999'")
    finally:
        await conn.close()
    with pytest.raises(SchemaNotMigrated) as caught:
        await PostgresEventStore.open(scratch_url, pg_registry)
    assert caught.value.current == "9999"
    assert await schema_revision(scratch_url) == "9999"


async def test_connection_lost_during_append_is_unavailable_and_retry_is_safe(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str
) -> None:
    await pg_store.append("S-1", [Deposited(amount=0)])
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2))]
    locker = await asyncpg.connect(pg_clean_url)
    try:
        tx = locker.transaction()
        await tx.start()
        # A competing writer holds version 2 of S-1, not yet committed: the append that
        # wants it waits on the unique index.
        await raw_append(locker, pg_store, "S-1", [Deposited(amount=9)], expected=1)
        in_flight = asyncio.create_task(pg_store.append("S-1", batch, expected_version=1))
        await wait_until_blocked(raw_conn, locker.get_server_pid())
        killed = await raw_conn.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE $1 = ANY(pg_blocking_pids(pid))", locker.get_server_pid(),
        )
        assert killed
        with pytest.raises(StoreUnavailable):
            await in_flight
        await tx.rollback()
    finally:
        await locker.close()
    assert await pg_store.stream_version("S-1") == 1  # not at all ...
    first = await pg_store.append("S-1", batch, expected_version=1)
    again = await pg_store.append("S-1", batch, expected_version=1)  # ... then exactly once
    assert first == again
    assert [e.stream_version for e in await pg_store.read_stream("S-1")] == [1, 2, 3]


async def test_connection_lost_inside_a_transaction_leaves_nothing(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str
) -> None:
    writer = await asyncpg.connect(pg_clean_url)
    event = NewEvent(Deposited(amount=1))
    try:
        await writer.execute("BEGIN")
        await raw_append(writer, pg_store, "S-1", [event], expected=0)
        assert await raw_conn.fetchval("SELECT pg_terminate_backend($1)", writer.get_server_pid())
        lost = (asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError, OSError)
        with pytest.raises(lost):
            await writer.execute("COMMIT")
    finally:
        writer.terminate()
    assert await pg_store.read_all() == []
    assert (await pg_store.append("S-1", [event], expected_version=0)).version == 1


async def test_store_recovers_after_its_connections_are_killed(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    await raw_conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'eventfold' AND datname = current_database()"
    )
    failures = 0
    for _ in range(12):  # each killed pooled connection fails one call, then is replaced
        try:
            await pg_store.append("S-1", [Deposited(amount=2)])
            break
        except StoreUnavailable:
            failures += 1
    assert failures <= 10  # at most one per pooled connection (max_size)
    assert await pg_store.stream_version("S-1") == 2


async def test_restored_ids_beyond_the_horizon_are_refused_then_repaired(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str,
    pg_registry: EventRegistry,
) -> None:
    for number in range(3):
        last = await pg_store.append(f"S-{number}", [Deposited(amount=number)] * 2)
    await wait_visible(pg_store, last.global_position)
    before = await pg_store.read_all()
    # A logical restore from a cluster whose counter was far ahead of this one's.
    await raw_conn.execute(
        "UPDATE eventfold_events SET transaction_id = "
        "(transaction_id::text::bigint + 5000000)::text::xid8"
    )
    with pytest.raises(TransactionHorizonError) as caught:
        await PostgresEventStore.open(pg_clean_url, pg_registry)
    assert caught.value.max_stored >= caught.value.server_xmax
    assert "repair-horizon" in str(caught.value)

    repair = await repair_horizon(pg_clean_url)
    assert repair.repaired
    assert (repair.events_renumbered, repair.transactions) == (6, 3)
    assert not (await repair_horizon(pg_clean_url)).repaired  # healthy now: no-op

    async with await PostgresEventStore.open(pg_clean_url, pg_registry) as store:
        after = await store.read_all()
        assert [e.event_id for e in after] == [e.event_id for e in before]
        new = await store.append("S-9", [Deposited(amount=9)])
        assert new.global_position > after[-1].global_position
        await wait_visible(store, new.global_position)
        assert (await store.read_all(after=after[-1].global_position))[0].stream_id == "S-9"


async def test_horizon_repair_keeps_order_within_and_across_transactions(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str,
    pg_registry: EventRegistry,
) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)])
    xmax = await raw_conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    # Restored rows from far ahead, with positions that disagree with transaction order.
    await raw_conn.execute(
        "INSERT INTO eventfold_events (transaction_id, event_id, stream_id, stream_version, "
        "event_type, schema_version, data, metadata) "
        "SELECT ($1::bigint + 1000 - g / 2)::text::xid8, gen_random_uuid(), 'S-2', g, "
        "'Deposited', 1, '{\"amount\": 1}', '{}' FROM generate_series(1, 40) AS g",
        xmax + 10**6,
    )
    expected = await raw_conn.fetch(
        "SELECT event_id FROM eventfold_events ORDER BY transaction_id, position"
    )
    repair = await repair_horizon(pg_clean_url)
    assert repair.transactions == 22  # S-1's and 21 distinct restored ones
    async with await PostgresEventStore.open(pg_clean_url, pg_registry) as store:
        await wait_visible(store, GlobalPosition(repair.transactions + 2, 0))
        log = await store.read_all(limit=1000)
    assert [e.event_id for e in log] == [row[0] for row in expected]


async def test_the_transaction_counter_can_be_moved_forward(raw_conn: asyncpg.Connection) -> None:
    start = await raw_conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    consumed = await advance_transaction_counter(raw_conn, start + 50)
    assert 50 <= consumed <= 51
    now = await raw_conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
    assert now > start + 50
    assert await advance_transaction_counter(raw_conn, start) == 0


async def test_open_transaction_holds_readers_back_and_is_named(
    pg_store: PostgresEventStore, pg_clean_url: str
) -> None:
    holder = await asyncpg.connect(
        pg_clean_url, server_settings={"application_name": "forgotten-batch-job"}
    )
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_current_xact_id()")
        appended = await pg_store.append("S-1", [Deposited(amount=1)])
        assert await pg_store.read_all() == []  # held back by the open transaction
        holders = {h.pid: h for h in await pg_store.horizon_holders()}
        assert holders[holder.get_server_pid()].application_name == "forgotten-batch-job"
        await tx.rollback()
        await wait_visible(pg_store, appended.global_position)
        assert len(await pg_store.read_all()) == 1
    finally:
        await holder.close()
