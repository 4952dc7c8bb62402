"""W2 append-batch and its baseline L2.

4 concurrent writers, one stream each, 10 events per append (with the expected version,
which a writer that owns its stream knows). L2 inserts the same 10 rows per transaction
with one ``INSERT ... SELECT FROM unnest(...)`` on 4 connections.
"""

from __future__ import annotations

import asyncio

import asyncpg

from benchmarks.database import BASELINE_TABLE
from benchmarks.payload import EVENT_TYPE, PAYLOAD_JSON, SAMPLE
from benchmarks.workload import Figure, Stopwatch, Workload, open_store, split
from eventfold.eventstore import EventRegistry

WRITERS = 4
BATCH = 10


def _stream_id(writer: int) -> str:
    return f"Reading-batch-{writer}"


def _batches(events: int) -> list[int]:
    """Batch sizes for one writer: full batches of 10 and a shorter last one if needed."""
    full, rest = divmod(events, BATCH)
    return [BATCH] * full + ([rest] if rest else [])


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Append ``size`` events in batches of 10 with expected-version checks, 4 writers."""
    store = await open_store(url, registry, WRITERS)
    try:

        async def writer(index: int, events: int) -> None:
            version = 0
            for count in _batches(events):
                await store.append(_stream_id(index), [SAMPLE] * count, expected_version=version)
                version += count

        with Stopwatch() as sw:
            await asyncio.gather(
                *(writer(index, share) for index, share in enumerate(split(size, WRITERS)))
            )
    finally:
        await store.close()
    return Figure(size, sw.seconds)


INSERT_BATCH = f"""
INSERT INTO {BASELINE_TABLE} (stream_id, version, event_type, data, metadata)
SELECT $1, v, $2, d, '{{}}'
FROM unnest($3::int[], $4::jsonb[]) AS batch(v, d)
"""


async def run_baseline(dsn: str, size: int) -> Figure:
    """L2: ``size`` rows, 10 per INSERT ... SELECT FROM unnest transaction, 4 connections."""
    pool = await asyncpg.create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
    try:

        async def writer(index: int, events: int) -> None:
            async with pool.acquire() as conn:
                insert = await conn.prepare(INSERT_BATCH)
                version = 0
                for count in _batches(events):
                    versions = list(range(version + 1, version + count + 1))
                    await insert.fetch(
                        _stream_id(index), EVENT_TYPE, versions, [PAYLOAD_JSON] * count
                    )
                    version += count

        with Stopwatch() as sw:
            await asyncio.gather(
                *(writer(index, share) for index, share in enumerate(split(size, WRITERS)))
            )
    finally:
        await pool.close()
    return Figure(size, sw.seconds)


WORKLOAD = Workload(
    id="W2",
    title="append-batch, 4 writers, 10 events/append",
    unit="events/s",
    size=100_000,
    eventfold=run_eventfold,
    baseline=run_baseline,
    baseline_id="L2",
    target=1.0,
)
"""W2 against L2 (target, with group commit: eventfold at least the baseline)."""
