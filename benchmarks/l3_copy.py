"""L3: COPY of 1,000,000 rows into the baselines' table, the bulk-load ceiling.

Rows are produced by a generator while asyncpg streams them in binary COPY format, so the
figure includes producing them, as a real bulk load would. 10,000 streams of 100 events.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg

from benchmarks.database import BASELINE_TABLE
from benchmarks.payload import EVENT_TYPE, PAYLOAD_JSON
from benchmarks.workload import Figure, Stopwatch, Workload

EVENTS_PER_STREAM = 100


def _rows(size: int) -> Iterator[tuple[str, int, str, str, str]]:
    for n in range(size):
        stream, offset = divmod(n, EVENTS_PER_STREAM)
        yield (f"Reading-copy-{stream}", offset + 1, EVENT_TYPE, PAYLOAD_JSON, "{}")


async def run_baseline(dsn: str, size: int) -> Figure:
    """COPY ``size`` rows on one connection."""
    conn = await asyncpg.connect(dsn)
    try:
        with Stopwatch() as sw:
            await conn.copy_records_to_table(
                BASELINE_TABLE,
                records=_rows(size),
                columns=["stream_id", "version", "event_type", "data", "metadata"],
            )
    finally:
        await conn.close()
    return Figure(size, sw.seconds)


WORKLOAD = Workload(
    id="L3",
    title="COPY bulk load (ceiling)",
    unit="rows/s",
    size=1_000_000,
    baseline=run_baseline,
    baseline_id="L3",
    on_sqlite=False,
)
"""L3: a baseline alone, no eventfold side and no ratio."""
