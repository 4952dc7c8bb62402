"""The PostgreSQL store behaves like the memory store: appends, reads, idempotency, errors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    ConcurrencyError,
    DuplicateEventId,
    Event,
    EventStore,
    GlobalPosition,
    InvalidAppend,
    NewEvent,
    connect,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore

from .conftest import Deposited, Noted, Withdrawn, wait_visible

pytestmark = pytest.mark.postgres


async def test_is_an_event_store(pg_store: PostgresEventStore) -> None:
    assert isinstance(pg_store, EventStore)
    assert pg_store.url.startswith("postgresql://")


async def test_append_and_read_back(pg_store: PostgresEventStore) -> None:
    first = await pg_store.append("Account-1", [Deposited(amount=10), Withdrawn(amount=3)])
    assert (first.version, first.last_position - first.first_position) == (2, 1)
    second = await pg_store.append(
        "Account-1", [NewEvent(Deposited(amount=5), metadata={"actor": "ann"})],
        expected_version=2,
    )
    assert second.version == 3
    assert second.global_position > first.global_position

    events = await pg_store.read_stream("Account-1")
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.data for e in events] == [{"amount": 10}, {"amount": 3}, {"amount": 5}]
    assert events[2].metadata == {"actor": "ann"}
    assert events[0].recorded_at.tzinfo is not None
    assert pg_store.registry.decode(events[1]) == Withdrawn(amount=3)
    assert await pg_store.stream_version("Account-1") == 3
    assert await pg_store.stream_version("Account-2") == 0


async def test_read_stream_arguments(pg_store: PostgresEventStore) -> None:
    await pg_store.append("S-1", [Deposited(amount=n) for n in range(1, 6)])
    async def versions(**kwargs: object) -> list[int]:
        return [e.stream_version for e in await pg_store.read_stream("S-1", **kwargs)]  # type: ignore[arg-type]

    assert await versions(from_version=2, to_version=4) == [2, 3, 4]
    assert await versions(backwards=True) == [5, 4, 3, 2, 1]
    assert await versions(backwards=True, from_version=4, to_version=2) == [4, 3, 2]
    assert await versions(limit=2) == [1, 2]
    assert await versions(limit=0) == []
    assert await versions(backwards=True, limit=1) == [5]
    assert await versions(from_version=10**12) == []
    assert await versions(as_of=datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert await versions(as_of=datetime.now(UTC)) == [1, 2, 3, 4, 5]
    assert await pg_store.read_stream("Nothing-here") == []


async def test_expected_versions(pg_store: PostgresEventStore) -> None:
    await pg_store.append("S-1", [Deposited(amount=1)], expected_version=NO_STREAM)
    with pytest.raises(ConcurrencyError) as caught:
        await pg_store.append("S-1", [Deposited(amount=1)], expected_version=NO_STREAM)
    assert (caught.value.expected, caught.value.actual) == (NO_STREAM, 1)
    with pytest.raises(ConcurrencyError) as caught:
        await pg_store.append("S-2", [Deposited(amount=1)], expected_version=STREAM_EXISTS)
    assert (caught.value.expected, caught.value.actual) == (STREAM_EXISTS, 0)
    with pytest.raises(ConcurrencyError) as caught:
        await pg_store.append("S-2", [Deposited(amount=1)], expected_version=3)
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == ("S-2", 3, 0)
    with pytest.raises(ConcurrencyError):
        await pg_store.append("S-1", [Deposited(amount=1)], expected_version=2**40)
    assert (await pg_store.append("S-1", [Deposited(amount=1)], expected_version=1)).version == 2
    exists = await pg_store.append("S-1", [Deposited(amount=1)], expected_version=STREAM_EXISTS)
    assert exists.version == 3
    assert (await pg_store.append("S-1", [Deposited(amount=1)], expected_version=ANY)).version == 4
    assert (await pg_store.append("S-3", [Deposited(amount=1)], expected_version=0)).version == 1
    assert await pg_store.read_stream("S-2") == []
    assert [s.stream_id for s in await pg_store.list_streams()] == ["S-1", "S-3"]


async def test_idempotent_append_returns_the_original_result(pg_store: PostgresEventStore) -> None:
    batch = [NewEvent(Deposited(amount=1)), NewEvent(Deposited(amount=2))]
    original = await pg_store.append("S-1", batch, expected_version=NO_STREAM)
    await pg_store.append("S-1", [Deposited(amount=3)])
    again = await pg_store.append("S-1", batch, expected_version=NO_STREAM)
    assert again == original
    assert await pg_store.stream_version("S-1") == 3


async def test_reused_event_id_is_a_duplicate(pg_store: PostgresEventStore) -> None:
    stored = NewEvent(Deposited(amount=1))
    await pg_store.append("S-1", [stored])
    with pytest.raises(DuplicateEventId):  # same id, other stream
        await pg_store.append("S-2", [stored])
    with pytest.raises(DuplicateEventId):  # same id after a new one: not the same batch
        await pg_store.append("S-1", [NewEvent(Deposited(amount=2)), stored])
    with pytest.raises(DuplicateEventId):  # a prefix plus a new event
        await pg_store.append("S-1", [stored, NewEvent(Deposited(amount=2))])
    with pytest.raises(DuplicateEventId):  # same id, other event type
        await pg_store.append("S-1", [NewEvent(Withdrawn(amount=1), event_id=stored.event_id)])
    assert await pg_store.stream_version("S-1") == 1
    assert await pg_store.stream_version("S-2") == 0


async def test_invalid_appends_write_nothing(pg_store: PostgresEventStore) -> None:
    cases: list[tuple[str, list[Event]]] = [
        ("", [Deposited(amount=1)]), ("S-1", []), (" S", [Noted(text="")]),
    ]
    for stream_id, events in cases:
        with pytest.raises(InvalidAppend):
            await pg_store.append(stream_id, events)
    with pytest.raises(InvalidAppend):
        await pg_store.append("S-1", [Deposited(amount=1)], expected_version=-1)
    assert await pg_store.head() == START


async def test_global_log(pg_store: PostgresEventStore) -> None:
    assert await pg_store.head() == START
    assert await pg_store.read_all() == []
    a = await pg_store.append("A-1", [Deposited(amount=1), Withdrawn(amount=1)])
    b = await pg_store.append("B-1", [Deposited(amount=2)])
    await wait_visible(pg_store, b.global_position)
    log = await pg_store.read_all()
    assert [(e.stream_id, e.stream_version) for e in log] == [("A-1", 1), ("A-1", 2), ("B-1", 1)]
    assert log[-1].global_position == b.global_position == await pg_store.head()
    assert log[1].global_position == a.global_position
    assert [e.stream_id for e in await pg_store.read_all(after=log[0].global_position)] == [
        "A-1", "B-1",
    ]
    assert len(await pg_store.read_all(limit=1)) == 1
    only = await pg_store.read_all(event_types=["Withdrawn"])
    assert [e.event_type for e in only] == ["Withdrawn"]
    assert await pg_store.read_all(after=b.global_position) == []


async def test_list_streams_pages_in_byte_order(pg_store: PostgresEventStore) -> None:
    for stream_id in ["b-1", "B-2", "a-1", "Order-2", "Order-10", "Ünïcode-1"]:
        await pg_store.append(stream_id, [Deposited(amount=1)])
    ids = [s.stream_id for s in await pg_store.list_streams()]
    assert ids == sorted(ids)
    assert [s.stream_id for s in await pg_store.list_streams(category="Order")] == [
        "Order-10", "Order-2",
    ]
    assert [s.stream_id for s in await pg_store.list_streams(after="b-1")] == ["Ünïcode-1"]
    assert len(await pg_store.list_streams(limit=2)) == 2
    info = (await pg_store.list_streams(category="a"))[0]
    assert (info.version, info.category) == (1, "a")
    assert info.updated_at == (await pg_store.read_stream("a-1"))[0].recorded_at


async def test_wait_for_events_wakes_on_append_from_another_store(
    pg_store: PostgresEventStore, pg_store_factory: object
) -> None:
    other = await pg_store_factory(poll_interval=30)  # type: ignore[operator]
    assert not await other.wait_for_events(START, timeout=0.05)
    waiting = asyncio.create_task(other.wait_for_events(START, timeout=20))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pg_store.append("S-1", [Deposited(amount=1)])
    assert await waiting
    # Woken by NOTIFY, long before the 30 s poll interval.
    assert loop.time() - started < 10
    assert await other.wait_for_events(START, timeout=0)


async def test_connections_carry_name_and_idle_timeout(pg_store_factory: object) -> None:
    store = await pg_store_factory(idle_in_transaction_timeout=7.5)  # type: ignore[operator]
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") == "eventfold"
        assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "7500ms"


async def test_idle_transaction_is_ended_by_the_server(pg_store_factory: object) -> None:
    store = await pg_store_factory(idle_in_transaction_timeout=0.2)  # type: ignore[operator]
    async with store.pool.acquire() as conn:
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        def on_end(_: object) -> None:
            if not ended.done():
                ended.set_result(None)

        conn.add_termination_listener(on_end)
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT pg_current_xact_id()")
        await asyncio.wait_for(ended, timeout=10)  # the server ends the idle session
    assert await store.read_all() == []  # the pool replaces the lost connection


async def test_connect_picks_the_postgres_backend(pg_clean_url: str, pg_registry: object) -> None:
    async with connect(pg_clean_url, pg_registry) as store:  # type: ignore[arg-type]
        assert isinstance(store, PostgresEventStore)
        result = await store.append("S-1", [Deposited(amount=1)])
        await wait_visible(store, result.global_position)
        assert len(await store.read_all()) == 1


async def test_event_ids_round_trip(pg_store: PostgresEventStore) -> None:
    event_id = uuid.uuid4()
    await pg_store.append("S-1", [NewEvent(Deposited(amount=1), event_id=event_id)])
    [record] = await pg_store.read_stream("S-1")
    assert record.event_id == event_id
    assert hash(record.event_id) == hash(event_id)
    assert record.global_position > GlobalPosition(0, 0)
