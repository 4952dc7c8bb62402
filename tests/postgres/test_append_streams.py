"""Appends to several streams at once, racing on a real server: no deadlock, no partial
call ever visible, the log and every stream gap-free, conflicts all-or-nothing."""

from __future__ import annotations

import asyncio
import random
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    START,
    ConcurrencyError,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamsConflict,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.records import ExpectedVersion

from .conftest import Deposited, wait_visible

pytestmark = pytest.mark.postgres

READ_LIMIT = 5


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE eventfold_events RESTART IDENTITY")
    finally:
        await conn.close()


async def _tail(
    store: PostgresEventStore, done: asyncio.Event, total: list[int]
) -> list[list[RecordedEvent]]:
    """Follow the log until the writers are done and everything is read: every read's
    records, in the order read."""
    reads: list[list[RecordedEvent]] = []
    after = START
    while True:
        finished = done.is_set()
        batch = await store.read_all(after=after, limit=READ_LIMIT)
        reads.append(batch)
        if batch:
            after = batch[-1].global_position
            continue
        if finished and sum(len(read) for read in reads) >= total[0]:
            return reads
        await store.wait_for_events(after, timeout=0.05)


@settings(
    max_examples=12, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1), writers=st.integers(2, 10), streams=st.integers(2, 5))
async def test_overlapping_calls_in_random_order_are_whole_and_gap_free(
    pg_store: PostgresEventStore, pg_clean_url: str, seed: int, writers: int, streams: int,
) -> None:
    await _reset(pg_clean_url)
    # A second store: its own pool and group-commit queue, racing the first.
    other = await PostgresEventStore.open(pg_clean_url, pg_store.registry, max_size=4)
    stores = [pg_store, other]
    calls: list[list[uuid.UUID]] = []
    """The event ids of each call that succeeded, in the order the log must hold them."""
    refused: list[uuid.UUID] = []
    appended = [0]
    done = asyncio.Event()

    async def writer(number: int) -> None:
        rng = random.Random(seed + number)
        store = stores[number % 2]
        for _ in range(6):
            names = rng.sample([f"S-{n}" for n in range(streams)], rng.randint(1, streams))
            if rng.random() < 0.2:  # a plain append racing the calls
                batch = [NewEvent(Deposited(amount=number))]
                await store.append(names[0], batch)
                calls.append([new.event_id for new in batch])
                appended[0] += 1
                continue
            parts: list[StreamAppend] = []
            for name in names:  # in random order: the store must order them itself
                guess = rng.choice(["exact", "any"])
                expected: ExpectedVersion = ANY
                if guess == "exact":
                    expected = await store.stream_version(name)
                events = [NewEvent(Deposited(amount=number)) for _ in range(rng.randint(1, 3))]
                parts.append(StreamAppend(name, events, expected_version=expected))
            ids = {
                part.stream_id: [e.event_id for e in part.events if isinstance(e, NewEvent)]
                for part in parts
            }
            try:
                results = await store.append_streams(parts)
            except StreamsConflict as exc:
                assert all(
                    c.expected != c.actual for c in exc.conflicts
                ), "a stream at its expected version was named"
                refused.extend(i for part_ids in ids.values() for i in part_ids)
                continue
            assert [r.stream_id for r in results] == [part.stream_id for part in parts]
            assert len({r.transaction_id for r in results}) == 1
            calls.append([i for name in sorted(ids) for i in ids[name]])
            appended[0] += sum(len(part_ids) for part_ids in ids.values())

    reading = asyncio.create_task(_tail(pg_store, done, appended))
    try:
        async with asyncio.timeout(120):  # a deadlock would hang here
            await asyncio.gather(*(writer(n) for n in range(writers)))
        done.set()
        reads = await reading
    finally:
        reading.cancel()
        await other.close()

    seen = [record for read in reads for record in read]
    seen_ids = [record.event_id for record in seen]
    # Gap-free: every committed event exactly once, in one stable order, nothing refused.
    assert len(seen_ids) == len(set(seen_ids))
    assert sorted(seen_ids) == sorted(i for call in calls for i in call)
    assert not set(refused) & set(seen_ids)
    positions = [record.global_position for record in seen]
    assert positions == sorted(positions)
    # Each call lies whole and contiguous in the log, under one transaction id.
    index = {event_id: n for n, event_id in enumerate(seen_ids)}
    for call in calls:
        at = [index[event_id] for event_id in call]
        assert at == list(range(at[0], at[0] + len(call))), "a call was split in the log"
        assert len({seen[n].transaction_id for n in at}) == 1
    # No read that reached the visible head stopped inside a call.
    last_of_call = {call[-1] for call in calls}
    call_of = {event_id: tuple(call) for call in calls for event_id in call}
    for read in reads:
        if read and len(read) < READ_LIMIT:
            assert read[-1].event_id in last_of_call, (
                f"a reader saw part of the call {call_of[read[-1].event_id]}"
            )
    # Every stream's versions are gap-free.
    for number in range(streams):
        events = await pg_store.read_stream(f"S-{number}")
        assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
    await wait_visible(pg_store, max(positions, default=START))


async def test_a_call_waiting_behind_a_stream_lock_writes_whole_after_it(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    """A writer holding one stream's exclusive lock makes the call take the locked path;
    it waits, then writes every stream, and an exact version that moved meanwhile is a
    conflict that writes nothing."""
    await pg_store.append("A-1", [Deposited(amount=1)])
    async with raw_conn.transaction():
        await raw_conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('B-1', 0))")
        call = asyncio.create_task(pg_store.append_streams([
            StreamAppend("B-1", [Deposited(amount=2)], expected_version=NO_STREAM),
            StreamAppend("A-1", [Deposited(amount=3)], expected_version=ANY),
        ]))
        while not await raw_conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ):
            assert not call.done(), call  # it must queue for the lock, not finish
            await asyncio.sleep(0)
    results = await call
    assert [(r.stream_id, r.version) for r in results] == [("B-1", 1), ("A-1", 2)]
    with pytest.raises(ConcurrencyError):
        await pg_store.append_streams([
            StreamAppend("A-1", [Deposited(amount=4)], expected_version=1),
            StreamAppend("C-1", [Deposited(amount=5)]),
        ])
    assert await pg_store.stream_version("C-1") == 0


async def test_the_same_call_sent_at_once_from_two_stores_is_stored_once(
    pg_store: PostgresEventStore, pg_clean_url: str
) -> None:
    other = await PostgresEventStore.open(pg_clean_url, pg_store.registry, max_size=4)
    try:
        for round_ in range(20):
            call = [
                StreamAppend(f"{name}-{round_}", [NewEvent(Deposited(amount=round_))])
                for name in ("B", "A", "C")
            ]
            first, second = await asyncio.gather(
                pg_store.append_streams(call), other.append_streams(call)
            )
            assert first == second
            for part in call:
                assert await pg_store.stream_version(part.stream_id) == 1
    finally:
        await other.close()
