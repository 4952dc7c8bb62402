"""W4 aggregate load: ``Repository.get`` of one long stream, with and without a snapshot.

A ``Sensor`` aggregate folds ``ReadingTaken`` events (about 200 bytes of JSON each). The
stream is written outside the clock in two eras, as an application that changed the event
would have written it: the first half at schema version 1 (no ``unit`` field), through a
store whose registry knows only that version, the rest at version 2. Loading goes through
a store whose registry holds version 2 and an upcaster from 1 to 2, so a load reads every
event, upcasts half of them, validates each into its pydantic model and folds it.

Each repetition times 20 loads after one untimed warm-up load (which also checks the
folded state) and reports loads/s with the median, fastest and slowest load in
microseconds. The snapshot variants first store a snapshot at the head minus 10 in the
store's snapshot table, then load through ``Repository(store, snapshots=...)``: the
snapshot plus the 10 events after it.

Four workloads: the 1,000- and 10,000-event streams (``--size`` changes the stream
length), each without and with the snapshot. No raw baseline; the card's targets are
absolute (shared/workloads.md): under 5 ms at 1,000 events and under 40 ms at 10,000 without
a snapshot, under 1 ms with one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.workload import BenchmarkError, Figure, Workload, open_store
from eventfold.aggregates import Aggregate, Repository, applies
from eventfold.eventstore import Event, EventRegistry, EventStore
from eventfold.snapshots import Snapshot, SnapshotStorage, open_snapshots
from eventfold.upcasters import Upcasters

LOADS = 20
"""Timed loads per repetition."""
APPEND_BATCH = 500
"""Events per append while writing the stream (outside the clock)."""
SNAPSHOT_LAG = 10
"""The snapshot sits this many events behind the head."""


class ReadingTakenV1(Event):
    """Version 1 of the reading, as the application wrote it before ``unit`` existed."""

    event_type = "ReadingTaken"
    schema_version = 1

    sequence: int
    device_id: str
    temperature: float
    humidity_pct: float
    battery_mv: int
    firmware: str
    location: str
    status: str
    note: str


class ReadingTaken(Event):
    """A sensor reading, version 2: the temperature's unit is explicit."""

    schema_version = 2

    sequence: int
    device_id: str
    temperature: float
    unit: str
    humidity_pct: float
    battery_mv: int
    firmware: str
    location: str
    status: str
    note: str


def _add_unit(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 readings were all in degrees Celsius."""
    return {**data, "unit": "celsius"}


def reader_registry() -> EventRegistry:
    """The current application's registry: version 2 and the upcaster from version 1."""
    upcasters = Upcasters()
    upcasters.register("ReadingTaken", 1)(_add_unit)
    registry = EventRegistry([ReadingTaken], upcaster=upcasters)
    upcasters.check(registry)
    return registry


class Sensor(Aggregate):
    """Folds readings into a count, a running sum and the last status seen."""

    readings: int = 0
    temperature_sum: float = 0.0
    status: str = ""
    last_sequence: int = 0

    @applies(ReadingTaken)
    def _taken(self, event: ReadingTaken) -> None:
        self.readings += 1
        self.temperature_sum += event.temperature
        self.status = event.status
        self.last_sequence = event.sequence


_COMMON: dict[str, Any] = {
    "device_id": "device-7f3a9c2e-4b1d",
    "humidity_pct": 48.5,
    "battery_mv": 3712,
    "firmware": "2.14.3-rc1",
    "location": "warehouse-3/aisle-12",
    "status": "nominal",
    "note": "on schedule",
}


def _reading(sequence: int, old: bool) -> Event:
    if old:
        return ReadingTakenV1(sequence=sequence, temperature=21.75, **_COMMON)
    return ReadingTaken(sequence=sequence, temperature=21.75, unit="celsius", **_COMMON)


async def _write_stream(url: str, stream_id: str, length: int) -> None:
    """Append the first half at version 1, the rest at version 2, in batches."""
    old_half = length // 2
    for registry, first, last, old in (
        (EventRegistry([ReadingTakenV1]), 1, old_half, True),
        (reader_registry(), old_half + 1, length, False),
    ):
        store = await open_store(url, registry, 1)
        try:
            for start in range(first, last + 1, APPEND_BATCH):
                end = min(start + APPEND_BATCH - 1, last)
                await store.append(
                    stream_id, [_reading(n, old) for n in range(start, end + 1)],
                    expected_version=start - 1,
                )
        finally:
            await store.close()


async def _time_loads(load: Callable[[], Awaitable[Sensor]], length: int) -> Figure:
    warm = await load()
    if (warm.version, warm.readings, warm.last_sequence) != (length, length, length):
        raise BenchmarkError(
            f"W4: the load folded {warm.readings} readings up to version {warm.version}, "
            f"expected {length}: the load is wrong, not slow"
        )
    times = []
    for _ in range(LOADS):
        started = time.perf_counter()
        await load()
        times.append(time.perf_counter() - started)
    return Figure(LOADS, sum(times), {
        "median_us": round(statistics.median(times) * 1e6),
        "min_us": round(min(times) * 1e6),
        "max_us": round(max(times) * 1e6),
    })


def _side(with_snapshot: bool) -> Callable[[str, EventRegistry, int], Awaitable[Figure]]:
    async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
        """Write a stream of ``size`` events, then time 20 loads of its aggregate."""
        # The harness's registry holds its own benchmark event; W4 needs the upcaster.
        sensor_id = "sensor-1"
        await _write_stream(url, Sensor.stream_id_for(sensor_id), size)
        store: EventStore = await open_store(url, reader_registry(), 1)
        snapshots: SnapshotStorage | None = None
        try:
            if with_snapshot:
                snapshots = open_snapshots(url)
                at = max(size - SNAPSHOT_LAG, 1)
                folded = await Repository(store).get(Sensor, sensor_id, version=at)
                await snapshots.save(Snapshot(
                    folded.stream_id, at, Sensor.state_version, folded.snapshot_state()
                ))
            repository = Repository(store, snapshots=snapshots)
            return await _time_loads(lambda: repository.get(Sensor, sensor_id), size)
        finally:
            if snapshots is not None:
                await snapshots.close()
            await store.close()

    return run_eventfold


def _workload(id: str, size: int, with_snapshot: bool) -> Workload:
    snapshot = f", snapshot at head-{SNAPSHOT_LAG}" if with_snapshot else ""
    return Workload(
        id=id,
        title=f"aggregate load, {size:,}-event stream{snapshot}",
        unit="loads/s",
        size=size,
        eventfold=_side(with_snapshot),
    )


WORKLOADS = (
    _workload("W4-1K", 1_000, False),
    _workload("W4-1K-SNAP", 1_000, True),
    _workload("W4-10K", 10_000, False),
    _workload("W4-10K-SNAP", 10_000, True),
)
"""W4's four variants (``--only W4`` selects them all); no baseline, absolute targets."""
