"""What only the SQLite store promises: one file, WAL, writers serialized across instances
and processes, atomic batches, and waiters woken by other writers."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from eventfold.eventstore import (
    NO_STREAM,
    START,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    Event,
    EventRegistry,
    NewEvent,
    SchemaNotMigrated,
    StoreUnavailable,
    connect,
)
from eventfold.eventstore.backends import sqlite as sqlite_backend
from eventfold.eventstore.backends.sqlite import SqliteEventStore
from eventfold.eventstore.migrate import SCHEMA_HEAD, VERSION_TABLE, migrate
from eventfold.eventstore.schema import events as events_table


class Ticked(Event):
    """The one event of these tests."""

    n: int


def registry() -> EventRegistry:
    """A registry with the tests' event."""
    return EventRegistry([Ticked])


def ticks(*numbers: int) -> list[Ticked]:
    """Events numbered as given."""
    return [Ticked(n=n) for n in numbers]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqliteEventStore]:
    """A store on a fresh migrated file."""
    async with await SqliteEventStore.open(db_url, registry()) as opened:
        yield opened


def db_path(url: str) -> str:
    """The file path of a sqlite:/// URL."""
    path = sa.make_url(url).database
    assert path is not None
    return path


# --- opening -------------------------------------------------------------------------------


async def test_file_is_in_wal_mode_with_a_busy_timeout(db_url: str) -> None:
    async with await SqliteEventStore.open(db_url, registry(), busy_timeout=2.5) as store:
        pragmas = {}
        for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous"):
            (row,) = await store._fetch(f"PRAGMA {name}", ())
            pragmas[name] = row[0]
    assert pragmas == {
        "journal_mode": "wal", "busy_timeout": 2500, "foreign_keys": 1, "synchronous": 2,
    }


async def test_both_url_spellings_open_the_same_file(db_url: str) -> None:
    async with connect(db_url, registry()) as store:
        await store.append("Clock-1", ticks(1))
    aio_url = db_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
    async with connect(aio_url, registry()) as store:
        assert await store.stream_version("Clock-1") == 1


async def test_missing_directory_is_store_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-dir' / 'eventfold.db'}"
    with pytest.raises(StoreUnavailable, match="directory exists") as caught:
        await SqliteEventStore.open(url, registry())
    assert caught.value.url == url


async def test_file_without_schema_is_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaNotMigrated, match="eventfold migrate") as caught:
        await SqliteEventStore.open(url, registry())
    assert caught.value.current is None


async def test_file_at_an_older_revision_is_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    await migrate(url, "0001")
    with pytest.raises(SchemaNotMigrated, match="0001") as caught:
        await SqliteEventStore.open(url, registry())
    assert (caught.value.current, caught.value.expected) == ("0001", SCHEMA_HEAD)
    await migrate(url)
    async with await SqliteEventStore.open(url, registry()) as store:
        assert await store.head() == START


async def test_in_memory_store_runs_the_migrations_itself() -> None:
    async with await SqliteEventStore.open("sqlite://", registry()) as store:
        rows = await store._fetch(f"SELECT version_num FROM {VERSION_TABLE}", ())
    assert rows == [(SCHEMA_HEAD,)]


async def test_not_a_sqlite_url_is_refused() -> None:
    with pytest.raises(StoreUnavailable, match="not a SQLite URL"):
        await SqliteEventStore.open("postgresql://localhost/x", registry())


async def test_events_outlive_the_store(db_url: str) -> None:
    async with connect(db_url, registry()) as store:
        written = await store.append("Clock-1", ticks(1, 2), expected_version=NO_STREAM)
    async with connect(db_url, registry()) as store:
        read = await store.read_stream("Clock-1")
        assert [store.registry.decode(e) for e in read] == ticks(1, 2)
        assert await store.head() == written.global_position
        assert all(e.recorded_at.tzinfo is UTC for e in read)


async def test_in_memory_stores_are_separate() -> None:
    async with (
        connect("sqlite://", registry()) as first, connect("sqlite://", registry()) as second
    ):
        await first.append("Clock-1", ticks(1))
        assert await second.head() == START
        assert await first.stream_version("Clock-1") == 1


async def test_closed_store_says_so(db_url: str) -> None:
    store = await SqliteEventStore.open(db_url, registry())
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.append("Clock-1", ticks(1))
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.head()


# --- stored shape --------------------------------------------------------------------------


async def test_rows_read_back_through_sqlalchemy_types(
    store: SqliteEventStore, db_url: str
) -> None:
    """Read models and tools may read the table with the Core metadata: the values agree."""
    batch = [NewEvent(Ticked(n=7), metadata={"tenant": "acme"})]
    await store.append("Clock-1", batch)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(events_table)).one()
    finally:
        engine.dispose()
    (recorded,) = await store.read_stream("Clock-1")
    assert row.event_id == batch[0].event_id
    assert row.data == {"n": 7}
    assert row.metadata == {"tenant": "acme"}
    assert row.recorded_at.replace(tzinfo=UTC) == recorded.recorded_at
    assert row.transaction_id == recorded.transaction_id == recorded.position


async def test_log_is_read_in_position_order(store: SqliteEventStore) -> None:
    """read_all walks the table's rowid range: no sort and no index lookups per row."""
    from eventfold.eventstore.backends.sqlite import _READ_ALL

    plan = await store._fetch(
        "EXPLAIN QUERY PLAN " + _READ_ALL.format(types=""), (0, 0, 0, 10)
    )
    details = " ".join(str(row[-1]) for row in plan)
    assert "USING INTEGER PRIMARY KEY" in details
    assert "TEMP B-TREE" not in details


async def test_read_all_after_a_position_inside_a_batch(store: SqliteEventStore) -> None:
    await store.append("Clock-1", ticks(1, 2, 3))
    await store.append("Clock-2", ticks(4))
    first, second, third, fourth = await store.read_all()
    assert first.transaction_id == second.transaction_id == third.transaction_id
    assert fourth.transaction_id > third.transaction_id
    assert await store.read_all(after=second.global_position) == [third, fourth]
    assert await store.read_all(after=third.global_position) == [fourth]
    assert await store.read_all(after=fourth.global_position) == []


# --- atomic batches ------------------------------------------------------------------------


async def test_append_failing_half_way_leaves_nothing(
    store: SqliteEventStore, db_url: str
) -> None:
    await store.append("Clock-1", ticks(1))
    head = await store.head()
    # A trigger refuses the third row of the next batch, after two rows went in.
    with sqlite3.connect(db_path(db_url)) as raw:
        raw.execute(
            "CREATE TRIGGER refuse_third BEFORE INSERT ON eventfold_events "
            "WHEN NEW.stream_version = 4 BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    raw.close()
    with pytest.raises(StoreUnavailable, match="nothing was written"):
        await store.append("Clock-1", ticks(2, 3, 4, 5), expected_version=1)
    assert await store.stream_version("Clock-1") == 1
    assert await store.head() == head
    assert [e.stream_version for e in await store.read_stream("Clock-1")] == [1]
    # The store carries on, and the refused positions are not skipped.
    result = await store.append("Clock-1", ticks(2, 3), expected_version=1)
    assert result.version == 3
    assert result.first_position == head.position + 1


async def test_clash_in_the_middle_of_a_batch_writes_none_of_it(
    store: SqliteEventStore,
) -> None:
    taken = NewEvent(Ticked(n=0))
    await store.append("Other-1", [taken])
    batch = [NewEvent(Ticked(n=1)), taken, NewEvent(Ticked(n=2))]
    with pytest.raises(Exception, match="already stored"):
        await store.append("Clock-1", batch)
    assert await store.stream_version("Clock-1") == 0
    assert len(await store.read_all()) == 1


async def test_cancelled_append_is_all_or_nothing(store: SqliteEventStore) -> None:
    for attempt in range(20):
        stream = f"Clock-{attempt}"
        task = asyncio.create_task(store.append(stream, ticks(1, 2, 3)))
        for _ in range(attempt):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert len(await store.read_stream(stream)) in {0, 3}
        # Whatever happened, the next append starts from a clean transaction.
        result = await store.append(stream, ticks(9))
        assert result.version in {1, 4}


# --- serialized writers --------------------------------------------------------------------


async def test_concurrent_writers_in_one_process(store: SqliteEventStore) -> None:
    async def writer(w: int) -> None:
        for i in range(10):
            await store.append(f"Clock-{w}", ticks(i, i), expected_version=2 * i)
            await store.append("Clock-shared", ticks(i))

    await asyncio.gather(*(writer(w) for w in range(12)))
    log = await store.read_all(limit=10_000)
    assert [e.position for e in log] == list(range(1, 12 * 30 + 1))
    assert all(e.transaction_id <= e.position for e in log)
    assert [e.global_position for e in log] == sorted(e.global_position for e in log)
    assert await store.stream_version("Clock-shared") == 120
    for w in range(12):
        versions = [e.stream_version for e in await store.read_stream(f"Clock-{w}")]
        assert versions == list(range(1, 21))


async def test_two_instances_race_on_one_stream(db_url: str) -> None:
    """Writers on two stores of one file: every version once, losers told the truth."""
    rounds = 30
    async with (
        connect(db_url, registry(), readers=1) as first,
        connect(db_url, registry(), readers=1) as second,
    ):
        stores = [first, second]
        losers: list[ConcurrencyError] = []
        for version in range(rounds):
            outcomes = await asyncio.gather(
                *(
                    stores[i % 2].append("Clock-1", ticks(version), expected_version=version)
                    for i in range(6)
                ),
                return_exceptions=True,
            )
            winners = [o for o in outcomes if not isinstance(o, BaseException)]
            assert len(winners) == 1
            assert winners[0].version == version + 1
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    assert isinstance(outcome, ConcurrencyError)
                    losers.append(outcome)
        read = await second.read_stream("Clock-1")
    assert [e.stream_version for e in read] == list(range(1, rounds + 1))
    assert len(losers) == 5 * rounds
    assert all(loser.actual == loser.expected + 1 for loser in losers)  # type: ignore[operator]


async def test_instances_retrying_on_conflict_leave_no_gap(db_url: str) -> None:
    """Free-running writers with retries, random delays between read and append."""
    target = 60
    conflicts = 0

    async def writer(store_: object) -> None:
        nonlocal conflicts
        assert isinstance(store_, SqliteEventStore)
        while (version := await store_.stream_version("Clock-1")) < target:
            await asyncio.sleep(random.uniform(0, 0.002))
            try:
                await store_.append("Clock-1", ticks(version), expected_version=version)
            except ConcurrencyError as exc:
                assert exc.actual > version
                conflicts += 1

    async with (
        connect(db_url, registry()) as first, connect(db_url, registry()) as second
    ):
        await asyncio.gather(*(writer(s) for s in [first, second] * 3))
        read = await first.read_stream("Clock-1")
    assert [e.stream_version for e in read][:target] == list(range(1, target + 1))
    assert [e.data["n"] for e in read] == [v - 1 for v in range(1, len(read) + 1)]
    assert conflicts > 0


APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from eventfold.eventstore import ConcurrencyError, Event, EventRegistry, connect

    class Ticked(Event):
        n: int

    def registry():
        return EventRegistry([Ticked])

    def ticks(*numbers):
        return [Ticked(n=n) for n in numbers]

    async def main(url, name, count):
        conflicts = 0
        async with connect(url, registry()) as store:
            done = 0
            while done < count:
                version = await store.stream_version("Clock-1")
                try:
                    await store.append("Clock-1", ticks(version), expected_version=version)
                    await store.append(f"{name}-{done}", ticks(done))
                    done += 1
                except ConcurrencyError:
                    conflicts += 1
        print(conflicts)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_processes_racing_on_one_file(db_url: str) -> None:
    """Two OS processes append with expected versions; the file lock serializes them."""
    count = 80
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", APPENDER, db_url, name, str(count),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for name in ("A", "B")
    ]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    async with connect(db_url, registry()) as store:
        versions = [e.stream_version for e in await store.read_stream("Clock-1")]
        log = await store.read_all(limit=10_000)
    assert versions == list(range(1, 2 * count + 1))
    assert [e.position for e in log] == list(range(1, 4 * count + 1))
    assert [e.global_position for e in log] == sorted(e.global_position for e in log)


async def test_reappend_through_another_instance_returns_the_original(db_url: str) -> None:
    batch = [NewEvent(e) for e in ticks(1, 2)]
    async with connect(db_url, registry()) as first, connect(db_url, registry()) as second:
        original = await first.append("Clock-1", batch, expected_version=NO_STREAM)
        assert await second.append("Clock-1", batch, expected_version=NO_STREAM) == original
        assert await second.stream_version("Clock-1") == 2


# --- waiting -------------------------------------------------------------------------------


async def test_wait_for_events_sees_another_instances_append(db_url: str) -> None:
    async with (
        connect(db_url, registry(), poll_interval=0.01) as waiting,
        connect(db_url, registry()) as writing,
    ):
        waiter = asyncio.create_task(waiting.wait_for_events(START, timeout=10))
        await asyncio.sleep(0)
        assert not waiter.done()
        result = await writing.append("Clock-1", ticks(1))
        assert await asyncio.wait_for(waiter, 10) is True
        assert await waiting.head() == result.global_position
        assert await waiting.wait_for_events(result.global_position, timeout=0.02) is False


async def test_wait_for_events_wakes_at_once_on_own_append(db_url: str) -> None:
    # A poll interval far beyond the test's patience: only the in-process wake-up can win.
    async with connect(db_url, registry(), poll_interval=60) as store:
        waiter = asyncio.create_task(store.wait_for_events(START, timeout=30))
        await asyncio.sleep(0)
        await store.append("Clock-1", ticks(1))
        assert await asyncio.wait_for(waiter, 5) is True


def test_uuid_hex_is_the_stored_form(db_url: str) -> None:
    """The backend writes event ids as SQLAlchemy's Uuid type does on SQLite."""
    url = db_url
    event_id = uuid.uuid4()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                events_table.insert().values(
                    event_id=event_id, stream_id="s", stream_version=1, event_type="t",
                    schema_version=1, data={}, metadata={},
                )
            )
            stored = conn.exec_driver_sql("SELECT event_id FROM eventfold_events").scalar()
    finally:
        engine.dispose()
    assert stored == event_id.hex


# --- group commit --------------------------------------------------------------------------


async def test_appends_sharing_a_transaction_keep_their_own_outcomes(
    store: SqliteEventStore, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent appends go in one transaction, each in a savepoint: a refused one is
    rolled back alone, and each caller gets what it would have got alone."""
    group_sizes: list[int] = []
    real_group = sqlite_backend._append_group

    def counting_group(db: Any, upsert: str, appends: list[Any]) -> Any:
        group_sizes.append(len(appends))
        return real_group(db, upsert, appends)

    monkeypatch.setattr(sqlite_backend, "_append_group", counting_group)
    retried = [NewEvent(e) for e in ticks(1, 2)]
    original = await store.append("Retry-1", retried)
    taken = NewEvent(Ticked(n=0))
    await store.append("Taken-1", [taken])
    with sqlite3.connect(db_path(db_url)) as raw:
        raw.execute(
            "CREATE TRIGGER refuse_vetoed BEFORE INSERT ON eventfold_events "
            "WHEN NEW.stream_id = 'Vetoed-1' BEGIN SELECT RAISE(ABORT, 'vetoed'); END"
        )
    raw.close()
    head = await store.head()
    outcomes = await asyncio.gather(
        store.append("Clock-1", ticks(1, 2), expected_version=NO_STREAM),
        store.append("Retry-1", retried, expected_version=NO_STREAM),
        store.append("Clock-2", ticks(3), expected_version=5),
        store.append("Clock-3", [NewEvent(Ticked(n=4)), taken]),
        store.append("Vetoed-1", ticks(5)),
        store.append("Clock-1", ticks(6), expected_version=2),
        store.append("Clock-4", ticks(7)),
        return_exceptions=True,
    )
    assert group_sizes[-1] == 7
    appended, replayed, stale, clash, vetoed, second, last = outcomes
    assert replayed == original
    assert isinstance(stale, ConcurrencyError) and stale.actual == 0
    assert isinstance(clash, DuplicateEventId)
    assert isinstance(vetoed, StoreUnavailable) and "vetoed" in str(vetoed)
    assert isinstance(appended, AppendResult) and appended.version == 2
    assert isinstance(second, AppendResult) and second.version == 3
    assert isinstance(last, AppendResult)
    log = await store.read_all(after=head)
    assert [(e.stream_id, e.stream_version) for e in log] == [
        ("Clock-1", 1), ("Clock-1", 2), ("Clock-1", 3), ("Clock-4", 1),
    ]
    assert [e.position for e in log] == list(range(head.position + 1, head.position + 5))
    assert [e.transaction_id for e in log] == [
        appended.first_position, appended.first_position, second.first_position,
        last.first_position,
    ]
    for stream_id in ("Clock-2", "Clock-3", "Vetoed-1"):
        assert await store.stream_version(stream_id) == 0
