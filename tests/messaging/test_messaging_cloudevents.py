"""CloudEvents 1.0 export and import of stored envelopes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from messaging_support import ItemAdded, make_registry

from eventfold.eventstore import CloudEventError, RecordedEvent
from eventfold.eventstore.cloudevents import (
    from_cloudevent,
    import_cloudevent,
    to_cloudevent,
    to_cloudevent_json,
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
metadata_values = st.dictionaries(
    st.sampled_from(["correlation_id", "causation_id", "traceparent", "tracestate", "tenant",
                     "actor", "user id", "Weird.Key"]),
    json_values,
    max_size=6,
)
records = st.builds(
    RecordedEvent,
    event_id=st.uuids(),
    stream_id=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s),
    stream_version=st.integers(1, 2**40),
    transaction_id=st.integers(0, 2**63 - 1),
    position=st.integers(1, 2**63 - 1),
    event_type=st.text(min_size=1, max_size=30),
    schema_version=st.integers(1, 2**33),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    metadata=metadata_values,
    recorded_at=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                   timezone(timedelta(hours=-7))]),
    ),
)


@given(records, st.sampled_from(["", "com.example."]))
def test_a_record_survives_the_round_trip_through_json(record: RecordedEvent, prefix: str) -> None:
    body = to_cloudevent_json(record, source="eventfold://test", type_prefix=prefix)
    back = from_cloudevent(body, type_prefix=prefix)
    assert back == record
    assert back.recorded_at.utcoffset() == timedelta(0)


@given(records)
def test_attributes_follow_the_spec(record: RecordedEvent) -> None:
    ce = to_cloudevent(record, source="eventfold://shop")
    assert ce["specversion"] == "1.0"
    assert ce["id"] == str(record.event_id)
    assert ce["source"] == "eventfold://shop"
    assert ce["type"] == record.event_type
    assert ce["subject"] == record.stream_id
    assert ce["datacontenttype"] == "application/json"
    assert ce["time"].endswith("Z")
    for name, value in ce.items():
        # Attribute names are lowercase alphanumerics (the spec's rule for extensions).
        assert (name.isascii() and name.isalnum() and name.islower()) or name == "data", name
        if name != "data":
            # Extension values are scalars; Integers fit 32 bits.
            assert isinstance(value, (str, int)), name
            if isinstance(value, int):
                assert -(2**31) <= value < 2**31
    json.dumps(ce)  # plain JSON


def test_the_mapping_of_a_typical_event() -> None:
    event_id = uuid.uuid4()
    record = RecordedEvent(
        event_id=event_id, stream_id="Order-1", stream_version=3, transaction_id=7,
        position=42, event_type="OrderPlaced", schema_version=2, data={"total": 10},
        metadata={"correlation_id": "c-1", "causation_id": "e-0",
                  "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                  "tenant": "acme"},
        recorded_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    assert to_cloudevent(record, source="eventfold://orders") == {
        "specversion": "1.0",
        "id": str(event_id),
        "source": "eventfold://orders",
        "type": "OrderPlaced",
        "subject": "Order-1",
        "time": "2026-01-02T03:04:05.678901Z",
        "datacontenttype": "application/json",
        "streamversion": 3,
        "schemaversion": 2,
        "position": "42",
        "transactionid": "7",
        "correlationid": "c-1",
        "causationid": "e-0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "metadata": '{"tenant":"acme"}',
        "data": {"total": 10},
    }


def test_import_decodes_into_the_registered_class_and_keeps_the_id() -> None:
    foreign = {
        "specversion": "1.0", "id": "A234-1234-1234", "source": "https://other.example/",
        "type": "ItemAdded", "subject": "Item-9", "data": {"sku": "x", "n": 2},
        "correlationid": "req-1",
    }
    stream, new = import_cloudevent(foreign, make_registry())
    assert stream == "Item-9"
    assert new.event == ItemAdded(sku="x", n=2)
    assert new.metadata == {
        "correlation_id": "req-1",
        "cloudevent": {"id": "A234-1234-1234", "source": "https://other.example/"},
    }
    again = import_cloudevent(json.dumps(foreign), make_registry())[1]
    assert again.event_id == new.event_id  # importing twice appends once


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": None}, "'id'"),
        ({"id": "not-a-uuid"}, "not a UUID"),
        ({"subject": None}, "subject"),
        ({"streamversion": None}, "streamversion"),
        ({"position": "12x"}, "position"),
        ({"time": "yesterday"}, "RFC 3339"),
        ({"data": [1, 2]}, "JSON object"),
        ({"datacontenttype": "text/plain"}, "not JSON"),
        ({"metadata": "[1]"}, "metadata"),
    ],
)
def test_a_malformed_cloudevent_is_refused_with_the_reason(change: dict, message: str) -> None:
    record = RecordedEvent(
        event_id=uuid.uuid4(), stream_id="S-1", stream_version=1, transaction_id=1, position=1,
        event_type="ItemAdded", schema_version=1, data={"sku": "a"}, metadata={},
        recorded_at=datetime.now(UTC),
    )
    ce = {**to_cloudevent(record), **change}
    ce = {key: value for key, value in ce.items() if value is not None}
    with pytest.raises(CloudEventError, match=message):
        from_cloudevent(ce)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(CloudEventError, match="not JSON"):
        from_cloudevent(b"\x00garbage")
