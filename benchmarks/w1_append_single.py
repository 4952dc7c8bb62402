"""W1 append-single and its baseline L1.

8 concurrent writers, each on its own streams (10 events per stream, in order), one event
per append transaction, each append checking the expected version. L1 does the same with a
single-row INSERT per transaction on 8 connections; the unique (stream_id, version)
constraint is its version check.
"""

from __future__ import annotations

import asyncio

import asyncpg

from benchmarks.database import BASELINE_TABLE
from benchmarks.payload import EVENT_TYPE, PAYLOAD_JSON, SAMPLE
from benchmarks.workload import Figure, Stopwatch, Workload, open_store, split
from eventfold.eventstore import EventRegistry

WRITERS = 8
EVENTS_PER_STREAM = 10
"""Each writer fills a stream to 10 events (a typical aggregate), then starts the next."""


def _stream_id(writer: int, number: int) -> str:
    return f"Reading-w{writer}-{number}"


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Append ``size`` events one per append with expected-version checks, 8 writers."""
    store = await open_store(url, registry, WRITERS)
    try:

        async def writer(index: int, events: int) -> None:
            for n in range(events):
                stream, version = divmod(n, EVENTS_PER_STREAM)
                await store.append(_stream_id(index, stream), [SAMPLE], expected_version=version)

        with Stopwatch() as sw:
            await asyncio.gather(
                *(writer(index, share) for index, share in enumerate(split(size, WRITERS)))
            )
    finally:
        await store.close()
    return Figure(size, sw.seconds)


INSERT_ONE = f"""
INSERT INTO {BASELINE_TABLE} (stream_id, version, event_type, data, metadata)
VALUES ($1, $2, $3, $4, '{{}}')
"""


async def run_baseline(dsn: str, size: int) -> Figure:
    """L1: ``size`` single-row INSERTs, each its own transaction, on 8 connections."""
    pool = await asyncpg.create_pool(dsn, min_size=WRITERS, max_size=WRITERS)
    try:

        async def writer(index: int, events: int) -> None:
            async with pool.acquire() as conn:
                insert = await conn.prepare(INSERT_ONE)
                for n in range(events):
                    stream, offset = divmod(n, EVENTS_PER_STREAM)
                    await insert.fetch(_stream_id(index, stream), offset + 1, EVENT_TYPE,
                                       PAYLOAD_JSON)

        with Stopwatch() as sw:
            await asyncio.gather(
                *(writer(index, share) for index, share in enumerate(split(size, WRITERS)))
            )
    finally:
        await pool.close()
    return Figure(size, sw.seconds)


WORKLOAD = Workload(
    id="W1",
    title="append-single, 8 writers, 1 event/append",
    unit="events/s",
    size=20_000,
    eventfold=run_eventfold,
    baseline=run_baseline,
    baseline_id="L1",
    target=1.5,
)
"""W1 against L1 (target, with group commit: eventfold at least 1.5 times the baseline)."""
