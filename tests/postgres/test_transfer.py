"""Copying a whole store into PostgreSQL and out of it: the restored store keeps the global
log's guarantee, an interrupted copy resumes, a damaged copy or a foreign target is refused,
and a CloudEvents file carries every stored fact."""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from eventfold.eventstore import (
    START,
    EventRegistry,
    GlobalPosition,
    NewEvent,
    RecordedEvent,
    connect,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore
from eventfold.eventstore.errors import CloudEventError, CopyMismatch, CopyRefused
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.transfer import (
    TransferProgress,
    copy_store,
    export_events,
    import_file,
)

from .conftest import Deposited, wait_visible


class Interrupted(Exception):
    """Stands for a copy killed between two batches."""


async def _whole_log(store: EventStore) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    after = START
    while page := await store.read_all(after=after, limit=500):
        out.extend(page)
        after = page[-1].global_position
    return out


def _facts(records: list[RecordedEvent]) -> list[tuple[object, ...]]:
    """What a copy keeps of each event (not its position or transaction id)."""
    return [
        (r.event_id, r.stream_id, r.stream_version, r.event_type, r.schema_version, r.data,
         r.metadata, r.recorded_at)
        for r in records
    ]


@pytest.fixture
async def source(pg_store_factory: object, pg_clean_url: str) -> AsyncIterator[EventStore]:
    """A PostgreSQL store filled by racing writers, so that its log order, by transaction
    id, is not the order of its positions; opened raw for the copy."""
    writer = await PostgresEventStore.open(pg_clean_url, EventRegistry([Deposited]))
    rng = random.Random(7)

    async def write(n: int) -> None:
        for i in range(25):
            events = [
                NewEvent(Deposited(amount=i), metadata={"correlation_id": f"w{n}", "i": i})
                for _ in range(rng.randint(1, 3))
            ]
            await writer.append(f"Account-{n}-{i % 4}", events)

    try:
        await asyncio.gather(*(write(n) for n in range(6)))
        await wait_visible(writer, await writer.committed_head())
    finally:
        await writer.close()
    async with await PostgresEventStore.open(pg_clean_url, EventRegistry()) as store:
        yield store


@pytest.fixture
async def target_url(pg_fresh_url: str) -> str:
    """A new, migrated PostgreSQL database of the test's own."""
    return pg_fresh_url


async def _current_xid(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_current_xact_id()::text::bigint"))
    finally:
        await conn.close()


async def test_a_restored_store_starts_takes_appends_and_a_tailing_reader_sees_all(
    source: EventStore, target_url: str
) -> None:
    expected = await _whole_log(source)
    before_copy = await _current_xid(target_url)
    seen: list[RecordedEvent] = []

    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        stop = asyncio.Event()

        async def tail() -> None:
            # A subscriber of the target, running through the copy and the appends after.
            after = START
            while True:
                page = await target.read_all(after=after, limit=50)
                if page:
                    seen.extend(page)
                    after = page[-1].global_position
                elif stop.is_set():
                    return
                else:
                    await target.wait_for_events(after, timeout=0.2)

        reader = asyncio.create_task(tail())
        result = await copy_store(source, target, batch_size=37)
        assert (result.written, result.events) == (len(expected), len(expected))

        # The restored store opens as any store does (its horizon check passes), appends.
        registry = EventRegistry([Deposited])
        async with await PostgresEventStore.open(target_url, registry) as restored:
            for i in range(5):
                await restored.append("Account-new", [Deposited(amount=i)])
            stream = expected[0].stream_id
            more = await restored.append(
                stream, [Deposited(amount=99)],
                expected_version=max(
                    r.stream_version for r in expected if r.stream_id == stream
                ),
            )
            await wait_visible(restored, more.global_position)
            log = await _whole_log(restored)
        await wait_visible(target, more.global_position)
        stop.set()
        await asyncio.wait_for(reader, 60)

    # Every copied event in the source's order, then the new ones, each exactly once.
    assert _facts(log[: len(expected)]) == _facts(expected)
    assert [r.stream_id for r in log[len(expected):]] == ["Account-new"] * 5 + [stream]
    assert [r.event_id for r in seen] == [r.event_id for r in log]
    # The copy's events carry the target's own transaction ids, one per batch, in order.
    copied = log[: len(expected)]
    assert all(r.transaction_id > before_copy for r in copied)
    batches = [copied[i:i + 37] for i in range(0, len(copied), 37)]
    assert all(len({r.transaction_id for r in batch}) == 1 for batch in batches)
    assert [b[0].transaction_id for b in batches] == sorted(
        {b[0].transaction_id for b in batches}
    )
    assert [r.global_position for r in log] == sorted(r.global_position for r in log)


async def test_an_interrupted_copy_resumes_without_duplicates(
    source: EventStore, target_url: str
) -> None:
    expected = await _whole_log(source)
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        def stop_after_two(report: TransferProgress) -> None:
            if report.events >= 40:
                raise Interrupted

        with pytest.raises(Interrupted):
            await copy_store(source, target, batch_size=20, on_progress=stop_after_two)
        assert len(await _whole_log(target)) == 40
        result = await copy_store(source, target, batch_size=20)
        assert (result.written, result.events) == (len(expected) - 40, len(expected))
        again = await copy_store(source, target, batch_size=20)
        assert (again.written, again.events, again.checksum) == (
            0, len(expected), result.checksum,
        )
        assert _facts(await _whole_log(target)) == _facts(expected)


async def test_a_cancelled_copy_resumes(source: EventStore, target_url: str) -> None:
    expected = await _whole_log(source)
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        copied = asyncio.Event()

        def note(report: TransferProgress) -> None:
            if report.events >= 10:
                copied.set()

        task = asyncio.create_task(
            copy_store(source, target, batch_size=10, on_progress=note)
        )
        await copied.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await copy_store(source, target, batch_size=10)
        assert _facts(await _whole_log(target)) == _facts(expected)


async def test_a_changed_copy_fails_the_checksum(source: EventStore, target_url: str) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        await copy_store(source, target)
        conn = await asyncpg.connect(target_url)
        try:
            await conn.execute(
                "UPDATE eventfold_events SET data = '{\"amount\": -1}' "
                "WHERE position = (SELECT min(position) FROM eventfold_events)"
            )
        finally:
            await conn.close()
        with pytest.raises(CopyMismatch, match="checksums differ"):
            await copy_store(source, target)


async def test_between_postgres_stores_events_stream_from_server_to_server(
    source: EventStore, target_url: str
) -> None:
    expected = await _whole_log(source)
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:

        async def no_records(records: object) -> None:
            raise AssertionError("the copy decoded records instead of streaming COPY")

        target.import_events = no_records  # type: ignore[method-assign,assignment]
        result = await copy_store(source, target, batch_size=16)
        assert (result.written, result.events) == (len(expected), len(expected))
        assert _facts(await _whole_log(target)) == _facts(expected)


async def test_a_postgres_copy_the_target_refuses_midway_resumes_once_it_takes_them(
    source: EventStore, target_url: str
) -> None:
    expected = await _whole_log(source)
    conn = await asyncpg.connect(target_url)
    try:
        await conn.execute(
            "ALTER TABLE eventfold_events ADD CONSTRAINT low CHECK (stream_version < 5)"
        )
        async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
            with pytest.raises(asyncpg.CheckViolationError):
                await copy_store(source, target, batch_size=16)
            copied = await _whole_log(target)
            assert _facts(copied) == _facts(expected[: len(copied)])  # whole pages only
            assert 0 < len(copied) < len(expected) and len(copied) % 16 == 0
            await conn.execute("ALTER TABLE eventfold_events DROP CONSTRAINT low")
            result = await copy_store(source, target, batch_size=16)
            assert (result.written, result.events) == (
                len(expected) - len(copied), len(expected),
            )
            assert _facts(await _whole_log(target)) == _facts(expected)
        assert _facts(await _whole_log(source)) == _facts(expected)  # the source reads on
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "damage",
    [
        "UPDATE eventfold_events SET recorded_at = recorded_at + interval '1 microsecond' "
        "WHERE position = (SELECT max(position) FROM eventfold_events)",
        "UPDATE eventfold_events SET metadata = metadata || '{\"i\": -1}' "
        "WHERE position = (SELECT min(position) + 7 FROM eventfold_events)",
        "UPDATE eventfold_events SET event_type = 'Withdrawn' "
        "WHERE position = (SELECT min(position) + 3 FROM eventfold_events)",
    ],
)
async def test_a_damaged_postgres_copy_fails_the_checksum(
    source: EventStore, target_url: str, damage: str
) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        first = await copy_store(source, target, batch_size=16)
        conn = await asyncpg.connect(target_url)
        try:
            await conn.execute(damage)
        finally:
            await conn.close()
        with pytest.raises(CopyMismatch, match="checksums differ"):
            await copy_store(source, target, batch_size=16)
        assert len(await _whole_log(target)) == first.events


async def test_a_postgres_copy_missing_an_event_fails_the_count(
    source: EventStore, target_url: str
) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        first = await copy_store(source, target, batch_size=16)
        conn = await asyncpg.connect(target_url)
        try:
            await conn.execute(
                "DELETE FROM eventfold_events "
                "WHERE position = (SELECT min(position) + 20 FROM eventfold_events)"
            )
        finally:
            await conn.close()
        with pytest.raises(
            CopyMismatch, match=f"source has {first.events} events, the target {first.events - 1}"
        ):
            await copy_store(source, target, batch_size=16)


async def test_a_target_with_other_events_is_refused(
    source: EventStore, target_url: str
) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry([Deposited])) as target:
        await target.append("Account-other", [Deposited(amount=1)])
        with pytest.raises(CopyRefused, match="first is not the first event"):
            await copy_store(source, target)
        assert len(await _whole_log(target)) == 1


async def test_a_target_that_went_on_after_a_copy_is_refused(
    source: EventStore, target_url: str
) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry([Deposited])) as target:
        await copy_store(source, target)
        written = await target.append("Account-other", [Deposited(amount=1)])
        await wait_visible(target, written.global_position)  # type: ignore[arg-type]
        with pytest.raises(CopyRefused, match="is not in"):
            await copy_store(source, target)


async def test_postgres_to_sqlite_and_back(
    source: EventStore, target_url: str, tmp_path: Path
) -> None:
    expected = await _whole_log(source)
    sqlite_url = f"sqlite:///{tmp_path / 'copy.db'}"
    await migrate(sqlite_url)

    async with connect(sqlite_url, EventRegistry()) as middle:
        await copy_store(source, middle, batch_size=50)
        assert _facts(await _whole_log(middle)) == _facts(expected)
        async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
            result = await copy_store(middle, target, batch_size=50)
            assert result.events == len(expected)
            assert _facts(await _whole_log(target)) == _facts(expected)


async def test_export_and_import_keep_every_stored_fact_and_apply_no_upcaster(
    pg_clean_url: str, target_url: str
) -> None:
    old = datetime(2019, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    stored = [
        RecordedEvent(
            event_id=uuid.uuid4(), stream_id="Account-1", stream_version=v,
            transaction_id=0, position=0, event_type="Deposited", schema_version=1,
            data={"amount": v, "note": "ü"}, recorded_at=old,
            metadata={"correlation_id": "c-1", "causation_id": str(uuid.uuid4()),
                      "tenant": "acme", "nested": {"b": 1, "a": [1, 2]}},
        )
        for v in (1, 2, 3)
    ]
    async with await PostgresEventStore.open(pg_clean_url, EventRegistry()) as source:
        await source.import_events(stored)
        await wait_visible(source, await source.committed_head())
        exported = io.BytesIO()
        result = await export_events(source, exported, batch_size=2)
    assert result.events == 3
    lines = exported.getvalue().splitlines(keepends=True)
    assert len(lines) == 3
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        # The first line only, as an interrupted import leaves it; then the whole file.
        await import_file(lines[:1], target)
        imported = await import_file(lines, target, batch_size=2)
        assert (imported.written, imported.events, imported.checksum) == (
            2, 3, result.checksum,
        )
        await wait_visible(target, await target.committed_head())
        assert _facts(await _whole_log(target)) == _facts(stored)
        with pytest.raises(CopyRefused, match="first event"):
            await import_file(lines[1:], target)


async def test_import_names_the_line_it_cannot_read(target_url: str) -> None:
    async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
        with pytest.raises(CloudEventError, match=r"dump\.jsonl, line 2"):
            await import_file([b"\n", b'{"specversion": "1.0"}\n'], target, name="dump.jsonl")
        with pytest.raises(CloudEventError, match="NaN is not JSON"):
            await import_file([b'{"data": NaN}\n'], target)
        assert await target.head() == GlobalPosition(0, 0)


async def test_sqlite_to_postgres_whose_json_keys_come_back_in_another_order(
    target_url: str, tmp_path: Path
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'source.db'}"
    await migrate(sqlite_url)
    stored = [
        RecordedEvent(
            event_id=uuid.uuid4(), stream_id="Account-1", stream_version=v, transaction_id=0,
            position=0, event_type="Deposited", schema_version=1,
            data={"zeta": v, "a": {"yy": [1, {"b": 2, "a": 1}], "x": None}},
            metadata={"correlation_id": "c", "i": v}, recorded_at=datetime.now(UTC),
        )
        for v in (1, 2)
    ]
    async with connect(sqlite_url, EventRegistry()) as source:
        await source.import_events(stored)
        async with await PostgresEventStore.open(target_url, EventRegistry()) as target:
            result = await copy_store(source, target)
            assert result.events == 2
            copied = await _whole_log(target)
    assert list(copied[0].data) == ["a", "zeta"]  # jsonb's order, not the source's
    assert _facts(copied) == _facts(stored)


async def test_a_copy_waits_for_events_an_open_transaction_hides(
    pg_clean_url: str, target_url: str
) -> None:
    async with await PostgresEventStore.open(pg_clean_url, EventRegistry([Deposited])) as writer:
        seen = await writer.append("Account-1", [Deposited(amount=1)])
        await wait_visible(writer, seen.global_position)
        blocker = await asyncpg.connect(pg_clean_url)
        try:
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute("SELECT pg_current_xact_id()")  # takes an id: holds readers
            await writer.append("Account-1", [Deposited(amount=2)])  # committed, hidden
            async with (
                await PostgresEventStore.open(pg_clean_url, EventRegistry()) as source,
                await PostgresEventStore.open(target_url, EventRegistry()) as target,
            ):
                waiting = asyncio.Event()
                wait_for_events = source.wait_for_events

                async def noted(after: GlobalPosition, timeout: float) -> bool:
                    waiting.set()
                    return await wait_for_events(after, timeout)

                source.wait_for_events = noted  # type: ignore[method-assign]
                copying = asyncio.create_task(copy_store(source, target))
                await waiting.wait()
                await holding.rollback()
                result = await copying
        finally:
            await blocker.close()
    assert (result.written, result.events) == (2, 2)
