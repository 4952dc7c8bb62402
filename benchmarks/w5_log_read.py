"""W5 global log read and its baseline L4.

The log of ``benchmarks.global_log`` (1,000,000 events over 10,000 streams) is loaded
first, outside the clock. W5 then reads the whole log in order through
``store.read_all`` in batches of 1,000, continuing from each batch's last position, and
turns every record into its typed event with ``registry.decode`` (which validates it).
L4 scans the baselines' table in ``global_position`` order through a server-side cursor
that prefetches 1,000 rows at a time, and JSON-decodes ``data`` of every row.
"""

from __future__ import annotations

import json

import asyncpg

from benchmarks.database import BASELINE_TABLE
from benchmarks.global_log import load_postgres_baseline, load_store
from benchmarks.workload import BenchmarkError, Figure, Stopwatch, Workload, open_store
from eventfold.eventstore import START, EventRegistry

BATCH = 1_000
"""Events per ``read_all`` call, and rows per cursor prefetch in L4."""


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Read the whole log of ``size`` events in order, decoding each to its typed event."""
    await load_store(url, size)
    store = await open_store(url, registry, 1)
    events = 0
    try:
        # Untimed: another session's open transaction may still hide the loaded events.
        loaded = await store.committed_head()
        while (head := await store.head()) < loaded:
            await store.wait_for_events(head, 1.0)
        with Stopwatch() as sw:
            after = START
            decode = registry.decode
            while True:
                records = await store.read_all(after=after, limit=BATCH)
                for record in records:
                    decode(record)
                events += len(records)
                if len(records) < BATCH:
                    break
                after = records[-1].global_position
    finally:
        await store.close()
    if events != size:
        raise BenchmarkError(f"W5: read {events} events of the {size} loaded: the read lost some")
    return Figure(events, sw.seconds)


_SCAN = (
    f"SELECT global_position, stream_id, version, event_type, data, metadata, recorded_at "
    f"FROM {BASELINE_TABLE} ORDER BY global_position"
)


async def run_baseline(dsn: str, size: int) -> Figure:
    """L4: one ordered cursor scan of ``size`` rows, JSON-decoding ``data``."""
    await load_postgres_baseline(dsn, size)
    conn = await asyncpg.connect(dsn)
    rows = 0
    try:
        with Stopwatch() as sw:
            loads = json.loads
            async with conn.transaction():
                async for row in conn.cursor(_SCAN, prefetch=BATCH):
                    loads(row[4])
                    rows += 1
    finally:
        await conn.close()
    if rows != size:
        raise BenchmarkError(f"L4: scanned {rows} rows of the {size} loaded")
    return Figure(rows, sw.seconds)


WORKLOAD = Workload(
    id="W5",
    title="global log read, 10,000 streams, typed events",
    unit="events/s",
    size=1_000_000,
    eventfold=run_eventfold,
    baseline=run_baseline,
    baseline_id="L4",
    target=0.5,
)
"""W5 against L4 (target: eventfold at least 0.5 of the baseline)."""
