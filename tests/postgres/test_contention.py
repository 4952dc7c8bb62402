"""Appends that state no exact version (ANY, STREAM_EXISTS) never fail for contention.

Many writers on one stream, from two stores (two pools, or two connections to one SQLite
file): every append succeeds, each gets its own versions, and the stream and the global log
stay gap-free and in order. A lost race is never reported as an outage.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from eventfold.eventstore import (
    ANY,
    STREAM_EXISTS,
    EventRegistry,
    EventStore,
    InvalidAppend,
    StoreUnavailable,
    connect,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.records import ExpectedVersion

from .conftest import Deposited, wait_visible

WRITERS, APPENDS_EACH = 20, 40


async def race_on_one_stream(stores: list[EventStore]) -> None:
    """WRITERS tasks spread over ``stores`` append APPENDS_EACH single events each to one
    stream, half with ANY and half with STREAM_EXISTS, as fast as they can."""
    first = await stores[0].append("Hot-1", [Deposited(amount=-1)], expected_version=ANY)

    async def writer(number: int) -> list[int]:
        store = stores[number % len(stores)]
        expected: ExpectedVersion = ANY if number % 2 else STREAM_EXISTS
        versions = []
        for index in range(APPENDS_EACH):
            result = await store.append(
                "Hot-1", [Deposited(amount=number * 1000 + index)], expected_version=expected
            )
            versions.append(result.version)
        return versions

    async with asyncio.timeout(240):
        results = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    total = 1 + WRITERS * APPENDS_EACH
    written = sorted(v for versions in results for v in versions)
    assert written == list(range(2, total + 1)), "two appends got the same version, or a gap"
    for versions in results:
        assert versions == sorted(versions), "a writer's own appends went out of order"
    stream = await stores[0].read_stream("Hot-1")
    assert [e.stream_version for e in stream] == list(range(1, total + 1))
    assert first.version == 1
    # The global log holds every event once, in stream order.
    head = await stores[0].committed_head()
    if isinstance(stores[0], PostgresEventStore):
        await wait_visible(stores[0], head)
    log = await stores[0].read_all(limit=10 * total)
    assert [e.stream_version for e in log] == list(range(1, total + 1))
    assert [e.event_id for e in log] == [e.event_id for e in stream]
    positions = [e.global_position for e in log]
    assert positions == sorted(positions) and len(set(positions)) == total


async def test_many_writers_of_any_and_stream_exists_on_postgres_all_succeed(
    pg_store: PostgresEventStore, pg_store_factory: object
) -> None:
    other: PostgresEventStore = await pg_store_factory()  # type: ignore[operator]
    await race_on_one_stream([pg_store, other])
    # An insert that lost the race on the unique index used up a position: they did race.
    last = (await pg_store.read_stream("Hot-1", backwards=True, limit=1))[0]
    assert last.position > 1 + WRITERS * APPENDS_EACH, "the writers never raced"


async def test_many_writers_of_any_and_stream_exists_on_one_sqlite_file_all_succeed(
    tmp_path: Path, pg_registry: EventRegistry
) -> None:
    url = f"sqlite:///{tmp_path / 'hot.db'}"
    await migrate(url)
    async with connect(url, pg_registry) as one, connect(url, pg_registry) as two:
        await race_on_one_stream([one, two])


async def test_an_append_that_a_trigger_swallows_is_refused_not_an_outage(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    # Not contention: behind the stream's lock nothing can race the append, so the store
    # says what keeps the rows out instead of retrying or blaming the server.
    await pg_store.append("S-1", [Deposited(amount=0)])
    await raw_conn.execute(
        "CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NULL; END $$;"
        "CREATE TRIGGER swallow BEFORE INSERT ON eventfold_events "
        "FOR EACH ROW EXECUTE FUNCTION swallow()"
    )
    try:
        for expected in (ANY, STREAM_EXISTS, 1):
            with pytest.raises(InvalidAppend, match="check triggers") as caught:
                await pg_store.append(
                    "S-1", [Deposited(amount=1)], expected_version=expected
                )
            assert not isinstance(caught.value, StoreUnavailable)
    finally:
        await raw_conn.execute(
            "DROP TRIGGER swallow ON eventfold_events; DROP FUNCTION swallow()"
        )
    assert await pg_store.stream_version("S-1") == 1
