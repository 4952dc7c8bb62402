"""Correlation and causation ids propagate from a handled event to the events it causes."""

from __future__ import annotations

from eventfold.eventstore import NewEvent, connect
from eventfold.eventstore.causation import caused_by, correlated
from eventfold.eventstore.testing import ItemAdded, ItemRemoved, conformance_registry


async def test_events_appended_while_handling_an_event_are_caused_by_it() -> None:
    async with connect("memory://", conformance_registry()) as store:
        with correlated("request-42", traceparent="00-abc-def-01"):
            await store.append("Cart-1", [ItemAdded(sku="a")])
        (first,) = await store.read_stream("Cart-1")
        with caused_by(first):
            await store.append("Cart-1", [ItemRemoved(sku="a")])
        await store.append("Cart-1", [ItemAdded(sku="b")])
        _, second, third = await store.read_stream("Cart-1")
    assert first.metadata == {"correlation_id": "request-42", "traceparent": "00-abc-def-01"}
    assert second.metadata == {
        "correlation_id": "request-42",
        "causation_id": str(first.event_id),
        "traceparent": "00-abc-def-01",
    }
    assert third.metadata == {}


async def test_a_cause_without_correlation_starts_one_with_its_own_id() -> None:
    async with connect("memory://", conformance_registry()) as store:
        await store.append("Cart-1", [ItemAdded(sku="a")])
        (first,) = await store.read_stream("Cart-1")
        with caused_by(first):
            await store.append(
                "Cart-2", [NewEvent(ItemAdded(sku="b"), metadata={"actor": "alice"})]
            )
        (caused,) = await store.read_stream("Cart-2")
    assert caused.metadata == {
        "correlation_id": str(first.event_id),
        "causation_id": str(first.event_id),
        "actor": "alice",
    }


async def test_explicit_metadata_wins() -> None:
    async with connect("memory://", conformance_registry()) as store:
        with correlated("outer"):
            await store.append(
                "Cart-1", [NewEvent(ItemAdded(sku="a"), metadata={"correlation_id": "mine"})]
            )
        (event,) = await store.read_stream("Cart-1")
    assert event.metadata["correlation_id"] == "mine"
