"""W3 contention: 8 writers race on ONE stream until 2,000 appends have succeeded.

Each writer reloads the stream's version, appends one event expecting that version, and on
``ConcurrencyError`` counts a conflict and goes round again. A writer stops once the stream
holds the target number of events, so the stream ends at exactly that version; the run then
checks that it holds versions 1..N with no gap or duplicate. No raw baseline is defined for
this workload: the figure is successful appends/s, with the conflicts seen.
"""

from __future__ import annotations

import asyncio

from benchmarks.payload import SAMPLE
from benchmarks.workload import BenchmarkError, Figure, Stopwatch, Workload, open_store
from eventfold.eventstore import ConcurrencyError, EventRegistry

WRITERS = 8
STREAM_ID = "Reading-contended"


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Race 8 writers on one stream until ``size`` appends succeed; verify versions 1..size."""
    store = await open_store(url, registry, WRITERS)
    conflicts = 0
    try:

        async def writer() -> None:
            nonlocal conflicts
            while True:
                version = await store.stream_version(STREAM_ID)
                if version >= size:
                    return
                try:
                    await store.append(STREAM_ID, [SAMPLE], expected_version=version)
                except ConcurrencyError:
                    conflicts += 1

        with Stopwatch() as sw:
            await asyncio.gather(*(writer() for _ in range(WRITERS)))
        versions = [record.stream_version for record in await store.read_stream(STREAM_ID)]
    finally:
        await store.close()
    if versions != list(range(1, size + 1)):
        missing = sorted(set(range(1, size + 1)) - set(versions))[:10]
        raise BenchmarkError(
            f"W3: stream {STREAM_ID!r} should hold versions 1..{size} exactly, it holds "
            f"{len(versions)} events (first missing: {missing}); the store lost or duplicated "
            "an append under contention: this is a correctness bug, not a slow run"
        )
    return Figure(size, sw.seconds, {"conflicts": conflicts})


WORKLOAD = Workload(
    id="W3",
    title="contention, 8 writers on 1 stream, reload+retry",
    unit="appends/s",
    size=2_000,
    eventfold=run_eventfold,
)
"""W3: eventfold only (no baseline); reports conflicts alongside the rate."""
