"""Group commit: appends waiting at the same time share one statement and one transaction,
and each still gets exactly its own result."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    START,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    InvalidAppend,
    NewEvent,
    StoreUnavailable,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.backends.postgres_group import GROUP_EVENTS
from eventfold.eventstore.encoding import MAX_STREAM_ID_LENGTH
from eventfold.eventstore.records import ExpectedVersion

from .conftest import Deposited, Noted, wait_visible
from .test_races import tail, wait_until_blocked

pytestmark = pytest.mark.postgres


async def transactions(conn: asyncpg.Connection) -> int:
    """How many transactions wrote the stored events."""
    count: int = await conn.fetchval("SELECT count(DISTINCT transaction_id) FROM eventfold_events")
    return count


async def test_appends_waiting_together_commit_in_one_transaction(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    results = await asyncio.gather(
        *(pg_store.append(f"S-{n}", [Deposited(amount=n)], expected_version=NO_STREAM)
          for n in range(GROUP_EVENTS))
    )
    assert [result.version for result in results] == [1] * GROUP_EVENTS
    assert len({result.first_position for result in results}) == GROUP_EVENTS
    assert await transactions(raw_conn) == 1
    for n, result in enumerate(results):
        [event] = await pg_store.read_stream(f"S-{n}")
        assert (event.data["amount"], event.global_position) == (n, result.global_position)


async def test_more_appends_than_a_group_holds_go_in_groups_side_by_side(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    results = await asyncio.gather(
        *(pg_store.append(f"S-{n}", [Deposited(amount=n)]) for n in range(2 * GROUP_EVENTS)),
        pg_store.append("Big-1", [Deposited(amount=n) for n in range(GROUP_EVENTS + 1)]),
    )
    assert results[-1].version == GROUP_EVENTS + 1
    assert await transactions(raw_conn) == 3  # the big batch alone


async def test_without_group_commit_each_append_is_its_own_transaction(
    pg_store_factory: Any, raw_conn: asyncpg.Connection
) -> None:
    store: PostgresEventStore = await pg_store_factory(group_commit=False)
    await asyncio.gather(*(store.append(f"S-{n}", [Deposited(amount=n)]) for n in range(8)))
    assert await transactions(raw_conn) == 8


async def test_appends_to_one_stream_race_as_without_groups(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    results = await asyncio.gather(
        *(pg_store.append("Hot-1", [Deposited(amount=n)]) for n in range(4)),
        pg_store.append("Cold-1", [Deposited(amount=9)]),
    )
    # One append per stream in a group: the others of Hot-1 went alone, beside it.
    assert sorted(result.version for result in results[:4]) == [1, 2, 3, 4]
    assert sorted(e.data["amount"] for e in await pg_store.read_stream("Hot-1")) == [0, 1, 2, 3]
    # Cold-1 shares the first Hot-1 append's transaction, unless an append that went alone
    # took Hot-1's version 1 first: then the group failed as a whole and both went alone.
    assert await transactions(raw_conn) in (4, 5)


async def test_a_bad_append_in_a_group_fails_alone(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    taken = NewEvent(Deposited(amount=0))
    first = await pg_store.append("Taken-1", [taken])
    replay = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2))]
    replayed = await pg_store.append("Replay-1", replay)
    await pg_store.append("Conflict-1", [Deposited(amount=3)])

    outcomes = await asyncio.gather(
        pg_store.append("Good-1", [Deposited(amount=10)], expected_version=NO_STREAM),
        pg_store.append("Conflict-1", [Deposited(amount=11)], expected_version=NO_STREAM),
        pg_store.append("Good-2", [Deposited(amount=12), Deposited(amount=13)]),
        pg_store.append("Stolen-1", [taken]),  # another stream's event id
        pg_store.append("Replay-1", replay),  # a client's retry: the original result
        pg_store.append("x" * (MAX_STREAM_ID_LENGTH + 1), [Deposited(amount=14)]),
        pg_store.append("Nul-1", [Noted(text="a\x00b")]),
        pg_store.append("Good-3", [Deposited(amount=15)], expected_version=NO_STREAM),
        return_exceptions=True,
    )
    good_1, conflict, good_2, stolen, again, too_long, nul, good_3 = outcomes
    assert isinstance(good_1, AppendResult) and good_1.version == 1
    assert isinstance(conflict, ConcurrencyError) and conflict.actual == 1
    assert isinstance(good_2, AppendResult) and good_2.version == 2
    assert isinstance(stolen, DuplicateEventId) and stolen.event_id == taken.event_id
    assert again == replayed
    assert isinstance(too_long, InvalidAppend)
    assert isinstance(nul, InvalidAppend) and "NUL" in str(nul)
    assert isinstance(good_3, AppendResult) and good_3.version == 1
    assert [e.event_id for e in await pg_store.read_stream("Taken-1")] == [taken.event_id]
    assert await pg_store.read_stream("Stolen-1") == []
    assert await pg_store.stream_version("Replay-1") == 2
    assert await pg_store.stream_version("Conflict-1") == 1
    for stream, amounts in (("Good-1", [10]), ("Good-2", [12, 13]), ("Good-3", [15])):
        assert [e.data["amount"] for e in await pg_store.read_stream(stream)] == amounts
    assert await raw_conn.fetchval("SELECT count(*) FROM eventfold_events") == 1 + 2 + 1 + 4
    assert first.version == 1


async def test_a_group_refused_by_the_server_sends_each_append_alone(
    pg_store: PostgresEventStore, raw_conn: asyncpg.Connection
) -> None:
    # A rule the client cannot see: the server refuses one stream's events, which fails
    # the whole group statement; the others must not pay for it.
    await raw_conn.execute(
        """
        CREATE FUNCTION refuse_banned() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.stream_id = 'Banned-1' THEN RAISE EXCEPTION 'banned stream'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_banned BEFORE INSERT ON eventfold_events
            FOR EACH ROW EXECUTE FUNCTION refuse_banned();
        """
    )
    try:
        outcomes = await asyncio.gather(
            *(pg_store.append(f"S-{n}", [Deposited(amount=n)]) for n in range(3)),
            pg_store.append("Banned-1", [Deposited(amount=9)]),
            return_exceptions=True,
        )
    finally:
        await raw_conn.execute(
            "DROP TRIGGER refuse_banned ON eventfold_events; DROP FUNCTION refuse_banned()"
        )
    *good, banned = outcomes
    assert all(isinstance(result, AppendResult) for result in good)
    assert isinstance(banned, asyncpg.RaiseError) and "banned stream" in str(banned)
    assert await raw_conn.fetchval("SELECT count(*) FROM eventfold_events") == 3
    assert await transactions(raw_conn) == 3  # each alone, after the group failed


async def _blocked_group(
    store: PostgresEventStore, blocker: asyncpg.Connection, watcher: asyncpg.Connection,
    streams: list[str],
) -> list[asyncio.Task[AppendResult]]:
    """Appends to ``streams`` sent as one group that waits on ``blocker``'s table lock."""
    await blocker.execute("BEGIN; LOCK TABLE eventfold_events IN SHARE MODE")
    tasks = [
        asyncio.create_task(store.append(stream, [Deposited(amount=n)]))
        for n, stream in enumerate(streams)
    ]
    await wait_until_blocked(watcher, blocker.get_server_pid())
    return tasks


async def test_a_cancelled_member_leaves_the_others_their_commit(
    pg_store_factory: Any, pg_clean_url: str, raw_conn: asyncpg.Connection
) -> None:
    store: PostgresEventStore = await pg_store_factory(max_size=1)  # one group in flight
    blocker = await asyncpg.connect(pg_clean_url)
    try:
        in_flight = await _blocked_group(store, blocker, raw_conn, ["A-1", "A-2", "A-3"])
        queued = [asyncio.create_task(store.append(s, [Deposited(amount=7)]))
                  for s in ("B-1", "B-2")]
        await asyncio.sleep(0)  # queued behind the group in flight
        in_flight[1].cancel()
        queued[0].cancel()
        for task in (in_flight[1], queued[0]):
            with pytest.raises(asyncio.CancelledError):
                await task
        await blocker.execute("COMMIT")
        results = await asyncio.gather(in_flight[0], in_flight[2], queued[1])
    finally:
        await blocker.close()
    assert [result.version for result in results] == [1, 1, 1]
    counts = dict(await raw_conn.fetch(
        "SELECT stream_id, count(*) FROM eventfold_events GROUP BY stream_id"
    ))
    # The cancelled member's group went on without it: written once (it may be, as any
    # append cancelled in flight); the cancelled append that was still queued never went.
    assert counts == {"A-1": 1, "A-2": 1, "A-3": 1, "B-2": 1}


async def test_cancelling_every_member_cancels_the_statement(
    pg_store: PostgresEventStore, pg_clean_url: str, raw_conn: asyncpg.Connection
) -> None:
    blocker = await asyncpg.connect(pg_clean_url)
    try:
        tasks = await _blocked_group(pg_store, blocker, raw_conn, ["A-1", "A-2"])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task
        await blocker.execute("COMMIT")
    finally:
        await blocker.close()
    assert await raw_conn.fetchval("SELECT count(*) FROM eventfold_events") == 0
    assert (await pg_store.append("A-1", [Deposited(amount=1)])).version == 1


async def test_a_connection_lost_mid_group_reports_to_every_member(
    pg_store: PostgresEventStore, pg_clean_url: str, raw_conn: asyncpg.Connection
) -> None:
    blocker = await asyncpg.connect(pg_clean_url)
    try:
        tasks = await _blocked_group(pg_store, blocker, raw_conn, ["A-1", "A-2", "A-3"])
        killed = await raw_conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE $1 = ANY(pg_blocking_pids(pid))", blocker.get_server_pid(),
        )
        assert killed == 1  # one statement for the whole group
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await blocker.execute("COMMIT")
    finally:
        await blocker.close()
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 3
    assert await raw_conn.fetchval("SELECT count(*) FROM eventfold_events") == 0
    results = await asyncio.gather(
        *(pg_store.append(s, [Deposited(amount=1)]) for s in ("A-1", "A-2", "A-3"))
    )
    assert [result.version for result in results] == [1, 1, 1]


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE eventfold_events RESTART IDENTITY")
    finally:
        await conn.close()


@settings(
    max_examples=15, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**32 - 1), writers=st.integers(2, 12), streams=st.integers(1, 4))
async def test_racing_writers_get_exactly_what_the_store_holds(
    pg_store: PostgresEventStore, pg_clean_url: str,
    seed: int, writers: int, streams: int,
) -> None:
    await _reset(pg_clean_url)
    # A second store: two queues racing each other on the same streams.
    other = await PostgresEventStore.open(pg_clean_url, pg_store.registry, max_size=4)
    stores = [pg_store, other]
    reported: dict[uuid.UUID, tuple[str, int]] = {}
    appended = [0]
    done = asyncio.Event()

    async def writer(number: int) -> None:
        rng = random.Random(seed + number)
        for _ in range(8):
            stream = f"S-{rng.randrange(streams)}"
            batch = [NewEvent(Deposited(amount=number)) for _ in range(rng.randint(1, 3))]
            guess = rng.choice(["exact", "stale", "any"])
            expected: ExpectedVersion = ANY
            if guess != "any":
                version = await stores[number % 2].stream_version(stream)
                expected = version if guess == "exact" else max(0, version - 1)
            try:
                result = await stores[number % 2].append(
                    stream, batch, expected_version=expected
                )
            except ConcurrencyError as exc:
                assert exc.actual != expected
                continue
            assert result.version - len(batch) + 1 >= 1
            for offset, new in enumerate(batch):
                reported[new.event_id] = (stream, result.version - len(batch) + 1 + offset)
            appended[0] += len(batch)

    reading = asyncio.create_task(tail(pg_store, done, appended))
    try:
        await asyncio.gather(*(writer(n) for n in range(writers)))
        done.set()
        seen = await reading
    finally:
        reading.cancel()
        await other.close()

    stored: dict[uuid.UUID, tuple[str, int]] = {}
    for number in range(streams):
        events = await pg_store.read_stream(f"S-{number}")
        assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
        stored.update((e.event_id, (e.stream_id, e.stream_version)) for e in events)
    assert stored == reported
    positions = [record.global_position for _, record in seen]
    assert sorted(record.event_id for _, record in seen) == sorted(reported)
    assert positions == sorted(positions)
    await wait_visible(pg_store, max(positions, default=START))
