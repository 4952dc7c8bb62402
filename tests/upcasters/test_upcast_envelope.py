"""An upcast record keeps its whole envelope: only type, version and data change.

The registry builds upcast records with RecordedEvent's constructor rather than
``dataclasses.replace`` (a read's hot path); these tests fail when RecordedEvent gains a
field the registry would drop.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from eventfold.eventstore import Event, EventRegistry, RecordedEvent
from eventfold.upcasters import Upcasters


class PriceSet(Event):
    """A price, version 2: it names its currency."""

    schema_version = 2

    amount: int
    currency: str


def _registry() -> EventRegistry:
    upcasters = Upcasters()

    @upcasters.register("PriceSet", 1)
    def add_currency(data: dict[str, object]) -> dict[str, object]:
        return {**data, "currency": "EUR"}

    return EventRegistry([PriceSet], upcaster=upcasters)


def test_the_registry_knows_every_envelope_field() -> None:
    assert [field.name for field in dataclasses.fields(RecordedEvent)] == [
        "event_id", "stream_id", "stream_version", "transaction_id", "position",
        "event_type", "schema_version", "data", "metadata", "recorded_at", "corrupt",
    ]


def test_the_constructor_sets_every_field_from_its_own_argument() -> None:
    # RecordedEvent's __init__ is written by hand (slot setters, for speed): it must take
    # the fields in their declared order and set each one, keyword or positional.
    names = [field.name for field in dataclasses.fields(RecordedEvent)]
    values = [object() for _ in names]

    positional = RecordedEvent(*values)  # type: ignore[arg-type]
    by_name = RecordedEvent(**dict(zip(names, values, strict=True)))  # type: ignore[arg-type]

    for record in (positional, by_name):
        assert [getattr(record, name) for name in names] == values
    assert RecordedEvent(*values[:-1]).corrupt is None  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        positional.data = {}  # type: ignore[misc]


def test_an_upcast_record_differs_in_type_version_and_data_alone() -> None:
    stored = RecordedEvent(
        uuid.uuid4(), "Price-1", 3, 41, 42, "PriceSet", 1, {"amount": 5},
        {"correlation_id": "c-1"}, datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )

    (upcast,) = _registry().upcast_all([stored])

    assert upcast == dataclasses.replace(
        stored, schema_version=2, data={"amount": 5, "currency": "EUR"}
    )
    assert _registry().decode(upcast) == PriceSet(amount=5, currency="EUR")
