"""Upcasters on the store's read paths: events that old code wrote, read by today's code.

Old code is simulated by a writer registry holding the old classes; today's code reads with
a registry holding the current classes and the upcasters. On the memory backend the store's
registry is swapped after writing (one process, one log); on SQLite two connections with
different registries open the same file, as an old and a new deployment would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from upcaster_samples import (
    Money,
    OrderCreated,
    OrderPlaced,
    OrderPlacedAndPaid,
    OrderPlacedV1,
    PaymentReceived,
    reader_registry,
    writer_registry,
)

from eventfold.eventstore import (
    Event,
    EventDecodeError,
    EventRegistry,
    EventStore,
    UnknownEventType,
    connect,
)
from eventfold.eventstore.migrate import migrate
from eventfold.upcasters import Upcasters, UpcastFailed

History = Callable[[Sequence[tuple[str, Sequence[Event]]], EventRegistry], Awaitable[EventStore]]


@pytest.fixture(params=["memory", "sqlite"])
async def history(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[History]:
    """Write events with the old classes, return a store that reads with ``reader``."""
    async with AsyncExitStack() as stack:

        async def write_then_read(
            writes: Sequence[tuple[str, Sequence[Event]]], reader: EventRegistry
        ) -> EventStore:
            if request.param == "memory":
                store = await stack.enter_async_context(connect("memory://", writer_registry()))
                for stream_id, events in writes:
                    await store.append(stream_id, events)
                # The same log, now read by today's code.
                store.registry = reader
                return store
            url = f"sqlite:///{tmp_path / 'history.db'}"
            await migrate(url)
            async with connect(url, writer_registry()) as old:
                for stream_id, events in writes:
                    await old.append(stream_id, events)
            return await stack.enter_async_context(connect(url, reader))

        yield write_then_read


async def test_old_versions_are_read_at_the_current_version(history: History) -> None:
    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=700)])], reader_registry()
    )
    [record] = await store.read_stream("Order-1")
    assert (record.event_type, record.schema_version) == ("OrderPlaced", 3)
    assert record.data == {"order_id": "1", "total": {"cents": 700, "currency": "EUR"}}
    assert store.registry.decode(record) == OrderPlaced(
        order_id="1", total=Money(cents=700, currency="EUR")
    )


async def test_every_read_path_upcasts(history: History) -> None:
    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=n) for n in (1, 2)])],
        reader_registry(),
    )
    forwards = await store.read_stream("Order-1")
    backwards = await store.read_stream("Order-1", backwards=True)
    from_two = await store.read_stream("Order-1", from_version=2)
    log = await store.read_all()
    for records in (forwards, backwards, from_two, log):
        assert {(r.event_type, r.schema_version) for r in records} == {("OrderPlaced", 3)}
    assert [r.data["total"]["cents"] for r in backwards] == [2, 1]
    assert [r.stream_version for r in from_two] == [2]


async def test_a_renamed_type_is_read_under_its_new_name(history: History) -> None:
    store = await history([("Order-1", [OrderCreated(order_id="1", amount=5)])], reader_registry())
    [record] = await store.read_stream("Order-1")
    assert isinstance(store.registry.decode(record), OrderPlaced)


async def test_a_split_event_is_read_as_several_in_order(history: History) -> None:
    store = await history(
        [("Order-1", [OrderPlacedAndPaid(order_id="1", amount=9)])], reader_registry()
    )
    records = await store.read_stream("Order-1")
    events = [store.registry.decode(r) for r in records]
    assert events == [
        OrderPlaced(order_id="1", total=Money(cents=9, currency="EUR")),
        PaymentReceived(order_id="1", cents=9),
    ]
    # Both come from one stored row: the envelope says where it lies.
    assert len({(r.event_id, r.stream_version, r.position) for r in records}) == 1


async def test_reading_never_changes_what_is_stored(history: History) -> None:
    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=3)])], reader_registry()
    )
    await store.read_stream("Order-1")
    await store.read_all()
    store.registry = writer_registry()
    [record] = await store.read_stream("Order-1")
    assert (record.schema_version, record.data) == (1, {"order_id": "1", "amount": 3})


async def test_an_unknown_stored_type_names_type_version_stream_and_position(
    history: History,
) -> None:
    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=3)]),
         ("Pay-1", [PaymentReceived(order_id="1", cents=3), OrderCreated(order_id="2", amount=1)])],
        EventRegistry([OrderPlaced], upcaster=Upcasters()),
    )
    payment, created = await store.read_stream("Pay-1")
    # The store hands the record over as stored; decoding it is what fails, and a tolerant
    # reader can skip it by asking is_known first.
    assert not store.registry.is_known(payment)
    with pytest.raises(UnknownEventType) as caught:
        store.registry.decode(payment)
    error = caught.value
    assert (error.event_type, error.version, error.stream_id, error.position) == (
        "PaymentReceived", 1, "Pay-1", payment.position
    )
    assert f"'PaymentReceived' v1 (stream 'Pay-1', position {payment.position})" in str(error)
    assert not store.registry.is_known(created)
    with pytest.raises(UnknownEventType, match=r"'OrderCreated' v1 \(stream 'Pay-1', position"):
        store.registry.decode(created)
    # A registered type whose stored version has no upcaster is unknown at that version.
    [old] = await store.read_stream("Order-1")
    with pytest.raises(UnknownEventType, match=r"'OrderPlaced' v1 \(stream 'Order-1'"):
        store.registry.decode(old)


async def test_a_chain_stopping_short_names_where_it_stopped(history: History) -> None:
    upcasters = Upcasters()
    upcasters.register("OrderPlaced", 1)(lambda data: {**data, "currency": "EUR"})
    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=3)])],
        EventRegistry([OrderPlaced], upcaster=upcasters),
    )
    [record] = await store.read_stream("Order-1")
    with pytest.raises(UnknownEventType) as caught:
        store.registry.decode(record)
    assert (caught.value.event_type, caught.value.version) == ("OrderPlaced", 2)
    assert caught.value.stream_id == "Order-1"


async def test_data_that_fails_validation_after_upcasting_names_the_field(
    history: History,
) -> None:
    # A buggy chain: the v2 -> v3 step forgets the currency.
    buggy = Upcasters()
    buggy.register("OrderPlaced", 1)(lambda data: {**data, "currency": "EUR"})

    @buggy.register("OrderPlaced", 2)
    def forget_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {"order_id": data["order_id"], "total": {"cents": data["amount"]}}

    store = await history(
        [("Order-7", [OrderPlacedV1(order_id="7", amount=3)])], reader_registry(buggy)
    )
    [record] = await store.read_stream("Order-7")
    with pytest.raises(EventDecodeError) as caught:
        store.registry.decode(record)
    message = str(caught.value)
    assert "field 'total.currency'" in message
    assert "'OrderPlaced' v3" in message and "stream 'Order-7'" in message


async def test_an_upcaster_that_raises_fails_the_read_naming_the_step(history: History) -> None:
    upcasters = Upcasters()

    @upcasters.register("OrderPlaced", 1)
    def needs_currency(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": data["currency"]}

    store = await history(
        [("Order-1", [OrderPlacedV1(order_id="1", amount=3)])],
        EventRegistry([OrderPlaced], upcaster=upcasters),
    )
    with pytest.raises(UpcastFailed, match=r"needs_currency failed on a stored 'OrderPlaced' v1"):
        await store.read_stream("Order-1")
