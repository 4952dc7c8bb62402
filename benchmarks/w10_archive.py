"""W10 archiving: hot-log read speed before and after archiving the oldest 90% of the log.

The log of ``benchmarks.global_log`` (1,000,000 events over 10,000 streams, event ``n`` at
version ``n // streams + 1`` of stream ``n % streams``) is loaded outside the clock. The
oldest 90% of the log in log order are versions 1-90 of every stream, so
``archive_stream(stream, before=91)`` over every stream archives exactly them.

Measured, each as a counter (events/s, or µs per read):

- the hot log read whole (``read_all`` in batches of 1,000) and its newest 10% alone
  (``read_all`` after the position where they start: a subscriber near the head), before
  archiving, right after it, and after ``VACUUM ANALYZE`` (what autovacuum does next);
- stream reads of sampled streams: the whole stream (100 events before, 10 after) and its
  recent events alone (``from_version=91``: the same 10 events either way);
- the archive itself (events moved per second).

The figure is the whole log read through ``read_all_with_archive`` after archiving (every
event, archived or not, in log order): it checks that the archive lost nothing.
"""

from __future__ import annotations

import time

import asyncpg

from benchmarks.database import asyncpg_dsn
from benchmarks.global_log import CATEGORY as _CATEGORY
from benchmarks.global_log import EVENTS_PER_STREAM, load_store, stream_count
from benchmarks.workload import BenchmarkError, Figure, Stopwatch, Workload, open_store
from eventfold.eventstore import START, EventRegistry, EventStore, GlobalPosition, RecordedEvent

BATCH = 1_000
KEEP = 10
"""Versions kept hot of each stream's 100: the newest 10% of the log."""
SAMPLED_STREAMS = 2_000
"""Streams read per stream-read measurement (spread evenly over all of them)."""


async def _read_log(store: EventStore, after: GlobalPosition = START) -> tuple[int, float]:
    events = 0
    with Stopwatch() as sw:
        while records := await store.read_all(after=after, limit=BATCH):
            events += len(records)
            after = records[-1].global_position
    return events, sw.seconds


async def _read_streams(store: EventStore, streams: list[str], from_version: int | None) -> float:
    """Microseconds per ``read_stream`` of each of ``streams``."""
    with Stopwatch() as sw:
        for stream_id in streams:
            await store.read_stream(stream_id, from_version=from_version)
    return sw.seconds * 1e6 / len(streams)


async def _measure(
    store: EventStore, phase: str, streams: list[str], tail: GlobalPosition, out: dict[str, int]
) -> int:
    hot, seconds = await _read_log(store)
    out[f"{phase}_log_eps"] = round(hot / seconds)
    recent, seconds = await _read_log(store, tail)
    out[f"{phase}_tail_eps"] = round(recent / seconds)
    out[f"{phase}_stream_us"] = round(await _read_streams(store, streams, None))
    recent_from = EVENTS_PER_STREAM - KEEP + 1
    out[f"{phase}_recent_us"] = round(await _read_streams(store, streams, recent_from))
    return hot


async def _vacuum(url: str) -> None:
    if url.startswith("sqlite"):
        return  # SQLite deletes in place: nothing left for a vacuum to make readers skip
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("VACUUM ANALYZE eventfold_events")
        await conn.execute("VACUUM ANALYZE eventfold_events_archive")
    finally:
        await conn.close()


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Load ``size`` events, measure, archive the oldest 90%, measure again."""
    await load_store(url, size)
    store = await open_store(url, registry, 1)
    counters: dict[str, int] = {}
    count = stream_count(size)
    streams = [f"{_CATEGORY}-{n}" for n in range(0, count, max(1, count // SAMPLED_STREAMS))]
    try:
        loaded = await store.committed_head()
        while (head := await store.head()) < loaded:
            await store.wait_for_events(head, 1.0)
        # Where the newest 10% start: the first event of version KEEP from the end.
        first_recent: list[RecordedEvent] = await store.read_stream(
            f"{_CATEGORY}-0", from_version=EVENTS_PER_STREAM - KEEP, limit=1
        )
        tail = first_recent[0].global_position
        if await _measure(store, "before", streams, tail, counters) != size:
            raise BenchmarkError(f"W10: the loaded log does not hold {size} events")
        started = time.perf_counter()
        archived = 0
        for n in range(count):
            archived += await store.archive_stream(
                f"{_CATEGORY}-{n}", before=EVENTS_PER_STREAM - KEEP + 1
            )
        counters["archive_eps"] = round(archived / (time.perf_counter() - started))
        counters["archived"] = archived
        hot = await _measure(store, "after", streams, tail, counters)
        await _vacuum(url)
        await _measure(store, "vacuumed", streams, tail, counters)
        if hot + archived != size:
            raise BenchmarkError(f"W10: {hot} hot + {archived} archived events, not {size}")
        events = 0
        with Stopwatch() as sw:
            after = START
            while records := await store.read_all_with_archive(after=after, limit=BATCH):
                events += len(records)
                after = records[-1].global_position
    finally:
        await store.close()
    if events != size:
        raise BenchmarkError(f"W10: the whole log with the archive read {events} of {size}")
    return Figure(events, sw.seconds, counters)


WORKLOAD = Workload(
    id="W10",
    title="archive the oldest 90%: hot log and stream reads before and after",
    unit="events/s",
    size=1_000_000,
    eventfold=run_eventfold,
)
"""W10: no baseline; the before/after figures are in the counters."""
