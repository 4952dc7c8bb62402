"""The benchmark event: one registered eventfold event whose JSON is about 200 bytes.

Both sides of every workload write the same JSON text: eventfold serializes the event
itself on each append, the raw baselines send ``PAYLOAD_JSON`` (the event's own
``model_dump_json``), so the bytes reaching PostgreSQL are the same.
"""

from __future__ import annotations

from eventfold.eventstore import Event, EventRegistry


class ReadingRecorded(Event):
    """A sensor reading: a flat JSON object of about 200 bytes, like a typical domain event."""

    device_id: str
    sequence: int
    temperature_c: float
    humidity_pct: float
    battery_mv: int
    firmware: str
    location: str
    status: str
    note: str


SAMPLE = ReadingRecorded(
    device_id="device-7f3a9c2e-4b1d",
    sequence=123456,
    temperature_c=21.75,
    humidity_pct=48.5,
    battery_mv=3712,
    firmware="2.14.3-rc1",
    location="warehouse-3/aisle-12",
    status="nominal",
    note="on schedule",
)
"""The event every workload appends (events are immutable, so one instance serves all)."""

PAYLOAD_JSON = SAMPLE.model_dump_json()
"""The JSON text of ``SAMPLE``: what the raw baselines insert into ``data``."""

EVENT_TYPE = ReadingRecorded.event_type
"""The stored type name, also written by the baselines."""


def bench_registry() -> EventRegistry:
    """A registry holding the benchmark event."""
    return EventRegistry([ReadingRecorded])
