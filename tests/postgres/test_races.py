"""Racing writers: the global log never skips, optimistic concurrency never lets two win.

Run in a loop to gain confidence (see docs/operations.md):
``for i in $(seq 20); do pytest -q tests/postgres/test_races.py || break; done``
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from eventfold.eventstore import START, ConcurrencyError, Event, GlobalPosition, NewEvent
from eventfold.eventstore.backends.postgres import PostgresEventStore, append_statement
from eventfold.eventstore.encoding import encode_batch
from eventfold.eventstore.records import ANY, ExpectedVersion, RecordedEvent

from .conftest import Deposited, wait_visible

pytestmark = pytest.mark.postgres

async def raw_append(
    conn: asyncpg.Connection, store: PostgresEventStore, stream_id: str,
    events: Sequence[NewEvent | Event], expected: ExpectedVersion = ANY,
) -> GlobalPosition:
    """The store's append statement on a connection the test controls (its transaction);
    the position of the batch's first event."""
    query, args = append_statement(
        stream_id, encode_batch(store.registry, stream_id, events), expected
    )
    rows = await conn.fetch(query, *args)
    assert rows, "the append wrote nothing"
    return GlobalPosition(rows[0]["transaction_id"], rows[0]["position"])


async def tail(
    store: PostgresEventStore, done: asyncio.Event, expected_total: list[int]
) -> list[tuple[int, RecordedEvent]]:
    """Follow the log until the writers are done and everything is read.

    Returns (batch number, event) in the order seen."""
    seen: list[tuple[int, RecordedEvent]] = []
    after = START
    batch_number = 0
    while True:
        finished = done.is_set()
        batch = await store.read_all(after=after, limit=7)
        if batch:
            batch_number += 1
            seen.extend((batch_number, record) for record in batch)
            after = batch[-1].global_position
            continue
        if finished and len(seen) >= expected_total[0]:
            return seen
        await store.wait_for_events(after, timeout=0.05)


async def test_sixteen_writers_with_delays_inside_transactions_skip_nothing(
    pg_store: PostgresEventStore, pg_clean_url: str
) -> None:
    writers, appends_each = 16, 12
    committed: list[uuid.UUID] = []
    total = [writers * appends_each * 10]  # upper bound until the writers are done
    done = asyncio.Event()
    pool = await asyncpg.create_pool(pg_clean_url, min_size=writers, max_size=writers)
    assert pool is not None

    async def writer(number: int) -> None:
        rng = random.Random(number)
        async with pool.acquire() as conn:
            for index in range(appends_each):
                events = [NewEvent(Deposited(amount=index)) for _ in range(rng.randint(1, 3))]
                async with conn.transaction():
                    # Sleeping before and after the insert makes transaction ids and
                    # positions disagree, so commits land out of position order.
                    if rng.random() < 0.5:
                        await conn.execute("SELECT pg_current_xact_id()")
                        await asyncio.sleep(rng.random() * 0.01)
                    await raw_append(conn, pg_store, f"Writer{number}-{index % 3}", events)
                    await asyncio.sleep(rng.random() * 0.02)
                committed.extend(event.event_id for event in events)

    async def write_all() -> None:
        try:
            await asyncio.gather(*(writer(n) for n in range(writers)))
        finally:
            total[0] = len(committed)
            done.set()

    try:
        seen, _ = await asyncio.gather(tail(pg_store, done, total), write_all())
    finally:
        await pool.close()

    seen_ids = [record.event_id for _, record in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was seen twice"
    assert set(seen_ids) == set(committed), "a committed event was never seen"
    positions = [record.global_position for _, record in seen]
    assert positions == sorted(positions), "the log went backwards"
    # A stable order: reading the whole log again gives the same sequence.
    again = await pg_store.read_all(limit=100_000)
    assert [record.event_id for record in again] == seen_ids
    # Late commits with smaller positions after larger ones were visible were seen.
    late = sum(
        1 for (batch_a, a), (batch_b, b) in itertools.pairwise(seen)
        if batch_b > batch_a and b.position < a.position
    )
    print(f"{len(seen_ids)} events, {late} seen after a larger position was visible")


async def test_a_late_commit_with_a_smaller_position_is_not_skipped(
    pg_store: PostgresEventStore, pg_clean_url: str
) -> None:
    early = await asyncpg.connect(pg_clean_url)
    late = await asyncpg.connect(pg_clean_url)
    try:
        early_tx, late_tx = early.transaction(), late.transaction()
        await early_tx.start()
        await late_tx.start()
        await early.execute("SELECT pg_current_xact_id()")  # early gets the smaller xid
        late_at = await raw_append(late, pg_store, "Late-1", [Deposited(amount=1)])
        early_at = await raw_append(early, pg_store, "Early-1", [Deposited(amount=2)])
        assert late_at.position < early_at.position
        # Nothing is visible while an older transaction may still commit below it.
        assert await pg_store.read_all() == []
        await early_tx.commit()
        await wait_visible(pg_store, early_at)
        first = await pg_store.read_all()
        assert [record.stream_id for record in first] == ["Early-1"]
        # A reader by position alone would now be past Late-1's position for good.
        await late_tx.commit()
        await wait_visible(pg_store, late_at)
        rest = await pg_store.read_all(after=first[-1].global_position)
        assert [record.stream_id for record in rest] == ["Late-1"]
        assert rest[0].position < first[0].position
        assert await pg_store.head() == rest[0].global_position
    finally:
        await early.close()
        await late.close()


async def test_eight_writers_on_one_stream_never_both_win(
    pg_store: PostgresEventStore, pg_store_factory: object
) -> None:
    writers, wins_each = 8, 12
    stores = [pg_store] + [
        await pg_store_factory() for _ in range(3)  # type: ignore[operator]
    ]
    conflicts: list[ConcurrencyError] = []
    written: list[uuid.UUID] = []
    last = START

    async def writer(number: int) -> None:
        store = stores[number % len(stores)]
        rng = random.Random(number)
        wins = 0
        while wins < wins_each:
            version = await store.stream_version("Hot-1")
            event = NewEvent(Deposited(amount=number))
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.005)  # let others overtake
            try:
                result = await store.append("Hot-1", [event], expected_version=version)
            except ConcurrencyError as exc:
                assert exc.stream_id == "Hot-1"
                assert exc.expected == version
                assert exc.actual > version
                conflicts.append(exc)
                continue
            assert result.version == version + 1
            written.append(event.event_id)
            nonlocal last
            last = max(last, result.global_position)
            wins += 1

    await asyncio.gather(*(writer(n) for n in range(writers)))
    events = await pg_store.read_stream("Hot-1")
    assert [e.stream_version for e in events] == list(range(1, writers * wins_each + 1))
    assert sorted(e.event_id for e in events) == sorted(written)
    assert await pg_store.stream_version("Hot-1") == writers * wins_each
    assert conflicts, "the writers never raced"
    await wait_visible(pg_store, last)
    log = await pg_store.read_all(limit=10_000)
    assert [e.stream_version for e in log] == list(range(1, writers * wins_each + 1))


async def test_a_retry_racing_its_original_is_not_a_conflict(
    pg_store: PostgresEventStore, pg_clean_url: str, raw_conn: asyncpg.Connection
) -> None:
    await pg_store.append("S-1", [Deposited(amount=0)])
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2))]
    original = await asyncpg.connect(pg_clean_url)
    try:
        tx = original.transaction()
        await tx.start()
        await raw_append(original, pg_store, "S-1", batch, expected=1)
        # The retry waits for the original on the unique indexes while it is in flight ...
        retry = asyncio.create_task(pg_store.append("S-1", batch, expected_version=1))
        await wait_until_blocked(raw_conn, original.get_server_pid())
        await tx.commit()
        # ... and then returns the original's result instead of a false conflict.
        result = await retry
    finally:
        await original.close()
    assert result.version == 3
    assert [e.stream_version for e in await pg_store.read_stream("S-1")] == [1, 2, 3]


async def wait_until_blocked(watcher: asyncpg.Connection, pid: int) -> None:
    """Until some session waits for a lock held by backend ``pid`` (``watcher`` must not
    be in a transaction: pg_stat_activity is frozen within one)."""
    for _ in range(1000):
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session ever waited for the lock")
