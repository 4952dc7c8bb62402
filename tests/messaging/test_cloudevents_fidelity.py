"""CloudEvents of other producers: imported with their origin kept (``id``, ``source``,
``time``, ``dataschema``, extensions) and sent on unchanged; strict RFC 3339 times; an
import that does not fit says what was wrong with the incoming event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from eventfold.eventstore import CloudEventError, Event, EventDecodeError, EventRegistry, connect
from eventfold.eventstore.cloudevents import (
    ORIGIN,
    from_cloudevent,
    import_cloudevent,
    to_cloudevent,
)


class InvoiceIssued(Event):
    number: str
    total: int


def foreign(**changes: Any) -> dict[str, Any]:
    """A CloudEvent as another producer writes it."""
    return {
        "specversion": "1.0",
        "id": "invoice-7-issued",
        "source": "https://billing.example.com/invoices",
        "type": "InvoiceIssued",
        "subject": "Invoice-7",
        "time": "2026-12-04t17:09:00.123456789z",
        "dataschema": "https://billing.example.com/schemas/invoice-issued.json",
        "partitionkey": "customer-42",
        "sequence": 17,
        "data": {"number": "7", "total": 120},
        **changes,
    }


async def test_an_imported_event_keeps_its_origin_and_sends_it_on_unchanged() -> None:
    registry = EventRegistry([InvoiceIssued])
    stream_id, new_event = import_cloudevent(foreign(), registry)
    assert new_event.metadata[ORIGIN] == {
        "id": "invoice-7-issued",
        "source": "https://billing.example.com/invoices",
        "time": "2026-12-04t17:09:00.123456789z",
        "dataschema": "https://billing.example.com/schemas/invoice-issued.json",
        "extensions": {"partitionkey": "customer-42", "sequence": 17},
    }
    async with connect("memory://", registry) as store:
        await store.append(stream_id, [new_event])
        [record] = await store.read_stream(stream_id)

    sent = to_cloudevent(record, source="eventfold://ledger")
    for name in ("id", "source", "time", "dataschema", "partitionkey", "sequence", "data"):
        assert sent[name] == foreign()[name], name
    assert sent["eventid"] == str(record.event_id)
    assert "metadata" not in sent  # the origin is attributes, not a metadata blob
    assert from_cloudevent(sent) == record

    # Imported twice, appended once: the id of the origin maps to the same event id.
    assert import_cloudevent(sent, registry)[1].event_id == new_event.event_id


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("2026-12-04T17:09:00Z", datetime(2026, 12, 4, 17, 9, tzinfo=UTC)),
        ("2026-12-04t17:09:00.5z", datetime(2026, 12, 4, 17, 9, 0, 500000, tzinfo=UTC)),
        ("2026-12-04T18:09:00.1234567+01:00", datetime(2026, 12, 4, 17, 9, 0, 123456, tzinfo=UTC)),
    ],
)
def test_times_are_read_as_rfc_3339(time: str, expected: datetime) -> None:
    record = from_cloudevent(our_event(time=time))
    assert record.recorded_at == expected


@pytest.mark.parametrize(
    "time", ["2026-12-04 17:09:00Z", "2026-12-04T17:09:00", "2026-12-04", "20261204T170900Z"]
)
def test_times_that_are_not_rfc_3339_are_refused(time: str) -> None:
    with pytest.raises(CloudEventError, match="is not an RFC 3339 timestamp"):
        from_cloudevent(our_event(time=time))
    with pytest.raises(CloudEventError, match="is not an RFC 3339 timestamp"):
        import_cloudevent(foreign(time=time), EventRegistry([InvoiceIssued]))


def test_an_import_that_does_not_fit_names_the_incoming_event_not_a_stored_one() -> None:
    registry = EventRegistry([InvoiceIssued])
    with pytest.raises(CloudEventError) as bad_data:
        import_cloudevent(foreign(data={"number": "7", "total": "lots"}), registry)
    message = str(bad_data.value)
    assert "CloudEvent invoice-7-issued cannot be read" in message
    assert "'InvoiceIssued' v1 data does not fit" in message and "total" in message
    assert "stored event" not in message and "position" not in message

    with pytest.raises(CloudEventError, match="no event class is registered as 'CreditNoted'"):
        import_cloudevent(foreign(type="CreditNoted"), registry)


def our_event(**changes: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0", "id": "0190d5a2-7c3e-7000-8000-000000000001",
        "source": "eventfold", "type": "InvoiceIssued", "subject": "Invoice-7",
        "time": "2026-12-04T17:09:00Z", "datacontenttype": "application/json",
        "streamversion": 1, "schemaversion": 1, "position": "1", "transactionid": "1",
        "data": {"number": "7", "total": 120}, **changes,
    }


def test_a_damaged_record_is_not_sent_as_an_empty_event() -> None:
    record = from_cloudevent(our_event())
    damaged = dataclasses.replace(record, data={}, corrupt="the data cell is not JSON")
    with pytest.raises(EventDecodeError, match="not JSON"):
        to_cloudevent(damaged)
