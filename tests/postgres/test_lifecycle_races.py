"""Deleting streams races appends on real connections: no append lands inside a deleted
stream unnoticed, a tombstone refuses every later append, and a scavenge keeps the log
whole for a reader tailing it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventfold.eventstore import (
    START,
    ConcurrencyError,
    GlobalPosition,
    StreamAppend,
    StreamTombstoned,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.records import RecordedEvent

from .conftest import Deposited, wait_visible
from .test_races import raw_append, wait_until_blocked

pytestmark = pytest.mark.postgres


async def test_appends_racing_a_hard_delete_land_before_it_or_are_refused(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.append("Acct-1", [Deposited(amount=0)])
    written: list[int] = []
    refused = 0

    async def appender(number: int) -> None:
        nonlocal refused
        while True:
            try:
                result = await pg_store.append(
                    "Acct-1", [Deposited(amount=number)] * (1 + number % 2)
                )
            except StreamTombstoned:
                refused += 1
                return
            written.extend(range(result.version - number % 2, result.version + 1))

    tasks = [asyncio.create_task(appender(n)) for n in range(8)]
    await asyncio.sleep(0.3)
    tombstone = await pg_store.delete_stream("Acct-1", hard=True)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    assert refused == 8
    versions = [r.stream_version for r in await pg_store.read_stream("Acct-1", to_version=10**6)]
    assert versions == []  # the stream reads as deleted
    async with pg_store.pool.acquire() as conn:
        stored = [
            row[0]
            for row in await conn.fetch(
                "SELECT stream_version FROM eventfold_events WHERE stream_id = 'Acct-1' "
                "ORDER BY stream_version"
            )
        ]
    # Contiguous versions, the tombstone last; every acknowledged append lies before it.
    assert stored == list(range(1, tombstone.version + 1))
    assert sorted(written) == list(range(2, tombstone.version))
    with pytest.raises(StreamTombstoned):
        await pg_store.append_streams([StreamAppend("Acct-1", [Deposited(amount=1)])])


async def test_an_append_in_flight_when_a_delete_starts_lands_before_the_deletion(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection, pg_clean_url: str
) -> None:
    await pg_store.append("Acct-1", [Deposited(amount=1)])
    await raw_conn.execute("BEGIN")
    await raw_append(raw_conn, pg_store, "Acct-1", [Deposited(amount=2)])
    deleting = asyncio.create_task(pg_store.delete_stream("Acct-1", hard=True))
    watcher = await asyncpg.connect(pg_clean_url)
    try:
        await wait_until_blocked(watcher, raw_conn.get_server_pid())
    finally:
        await watcher.close()
    assert not deleting.done()  # it waits for the append in flight
    await raw_conn.execute("COMMIT")
    tombstone = await asyncio.wait_for(deleting, timeout=30)
    assert tombstone.version == 3
    with pytest.raises(StreamTombstoned):
        await pg_store.append("Acct-1", [Deposited(amount=3)])


async def test_a_soft_delete_and_appends_expecting_one_version_never_both_win(
    pg_store: PostgresEventStore,
) -> None:
    for round_number in range(10):
        stream_id = f"Acct-{round_number}"
        await pg_store.append(stream_id, [Deposited(amount=1)])

        async def delete(stream_id: str = stream_id) -> str:
            await pg_store.delete_stream(stream_id, expected_version=1)
            return "delete"

        async def append(stream_id: str = stream_id) -> str:
            await pg_store.append(stream_id, [Deposited(amount=2)], expected_version=1)
            return "append"

        outcomes = await asyncio.gather(delete(), append(), append(), return_exceptions=True)
        winners = [outcome for outcome in outcomes if isinstance(outcome, str)]
        assert len(winners) == 1, outcomes
        assert all(
            isinstance(outcome, ConcurrencyError)
            for outcome in outcomes
            if not isinstance(outcome, str)
        ), outcomes
        assert await pg_store.stream_version(stream_id) == 2
        read = await pg_store.read_stream(stream_id)
        assert (read == []) == (winners == ["delete"])


async def test_a_reader_tailing_the_log_while_scavenge_runs_sees_survivors_once_in_order(
    pg_store: PostgresEventStore,
) -> None:
    done = asyncio.Event()
    seen: list[RecordedEvent] = []

    async def tail() -> None:
        after = START
        while True:
            finished = done.is_set()
            batch = await pg_store.read_all(after=after, limit=5)
            if batch:
                seen.extend(batch)
                after = batch[-1].global_position
                continue
            if finished:
                return
            await pg_store.wait_for_events(after, timeout=0.05)

    async def churn(stream_number: int) -> GlobalPosition:
        last = START
        for round_number in range(6):
            stream_id = f"Doc-{stream_number}"
            await pg_store.append(stream_id, [Deposited(amount=n) for n in range(3)])
            if round_number % 2:
                last = (await pg_store.delete_stream(stream_id)).global_position
            else:
                version = await pg_store.stream_version(stream_id)
                last = (await pg_store.truncate_stream(stream_id, version)).global_position
            await pg_store.scavenge()
        return last

    reader = asyncio.create_task(tail())
    lasts = await asyncio.gather(*(churn(n) for n in range(6)))
    await pg_store.scavenge()
    await wait_visible(pg_store, max(lasts))
    done.set()
    await asyncio.wait_for(reader, timeout=60)

    positions = [record.global_position for record in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    survivors = await pg_store.read_all(limit=10_000)
    assert {r.global_position for r in survivors} <= set(positions)
    # Every deletion and truncation reached the reader, and survived the scavenge.
    assert sum(r.event_type.startswith("$") for r in seen) == 6 * 6
    assert sum(r.event_type.startswith("$") for r in survivors) == 6 * 6


async def test_a_group_of_appends_writes_the_others_and_refuses_the_tombstoned_one(
    pg_store: PostgresEventStore,
) -> None:
    await pg_store.append("Acct-0", [Deposited(amount=1)])
    await pg_store.delete_stream("Acct-0", hard=True)
    for _ in range(5):  # appends that arrive together share one group statement
        outcomes = await asyncio.gather(
            *(pg_store.append(f"Acct-{n}", [Deposited(amount=n)]) for n in range(8)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], StreamTombstoned), outcomes[0]
        assert all(not isinstance(outcome, BaseException) for outcome in outcomes[1:])
    assert await pg_store.stream_version("Acct-0") == 2
    assert [await pg_store.stream_version(f"Acct-{n}") for n in range(1, 8)] == [5] * 7
    async with pg_store.pool.acquire() as conn:
        transactions = await conn.fetchval(
            "SELECT count(DISTINCT transaction_id) FROM eventfold_events "
            "WHERE stream_id <> 'Acct-0'"
        )
    assert transactions < 35  # some appends went together, in one group statement
