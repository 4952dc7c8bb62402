"""W6 projection rebuild and its baseline L5.

The log of ``benchmarks.global_log`` is loaded first, outside the clock. W6 rebuilds the
``StreamCounts`` projection in place (``eventfold.projections.rebuild(..., in_place=True)``, batches
of 1,000): per stream, how many events it has and the type of its last one. The runner
commits every batch's writes together with the checkpoint. The projection writes a batch
with one upsert through the documented ``apply_batch`` hook; its per-event handler does the
same for one event (the runner uses it when it redoes a failing batch event by event).
``apply_batch`` reads only the envelopes (stream id, event type), so no event is decoded
and validated (``Delivery.event`` decodes on first use).

L5 does the same with asyncpg alone, the fastest honest way: the log read in keyset pages
of 1,000 rows (each page its own short prepared statement, ``WHERE global_position > $1
ORDER BY global_position LIMIT 1000``, JSON-decoding ``data`` as L4 does), each page folded
in Python and written by one transaction on a second connection holding the page's upsert
and the checkpoint's update. Not one long cursor transaction: that would hold back the xmin
horizon, so the read model's dead row versions could not be pruned and its upserts would
slow down about 5x (the figure such a baseline gave was 16-20k events/s).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks.database import BASELINE_TABLE
from benchmarks.global_log import load_postgres_baseline, load_store, stream_count
from benchmarks.payload import ReadingRecorded
from benchmarks.workload import BenchmarkError, Figure, Stopwatch, Workload, open_store
from eventfold.eventstore import EventRegistry
from eventfold.eventstore.engine import create_engine
from eventfold.projections import (
    Delivery,
    Projection,
    ProjectionContext,
    ReadModel,
    handles,
    rebuild,
)

BATCH = 1_000
"""Events per projection batch (one transaction, one checkpoint), as in L5."""

READ_MODEL = "bench_stream_counts"


# PostgreSQL takes the whole batch as three arrays in one statement; SQLite, which has no
# arrays, gets the same upsert once per row in one executemany.
_UPSERT_POSTGRES = """
INSERT INTO {table} AS t (stream_id, events, last_event_type)
SELECT * FROM unnest(CAST(:streams AS text[]), CAST(:counts AS int[]), CAST(:types AS text[]))
ON CONFLICT (stream_id) DO UPDATE
SET events = t.events + excluded.events, last_event_type = excluded.last_event_type
"""

_UPSERT_SQLITE = """
INSERT INTO {table} (stream_id, events, last_event_type) VALUES (:stream, :count, :type)
ON CONFLICT (stream_id) DO UPDATE
SET events = events + excluded.events, last_event_type = excluded.last_event_type
"""


def _fold(pairs: Sequence[tuple[str, str]]) -> dict[str, list[Any]]:
    """(stream id, event type) in log order -> per stream [events, last event type].

    One upsert cannot touch a row twice, so a batch is folded per stream first.
    """
    folded: dict[str, list[Any]] = {}
    for stream_id, event_type in pairs:
        entry = folded.get(stream_id)
        if entry is None:
            folded[stream_id] = [1, event_type]
        else:
            entry[0] += 1
            entry[1] = event_type
    return folded


async def _upsert(conn: AsyncConnection, table: sa.Table, folded: dict[str, list[Any]]) -> None:
    name = conn.dialect.identifier_preparer.quote(table.name)
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.text(_UPSERT_POSTGRES.format(table=name)),
            {
                "streams": list(folded),
                "counts": [entry[0] for entry in folded.values()],
                "types": [entry[1] for entry in folded.values()],
            },
        )
    else:
        await conn.execute(
            sa.text(_UPSERT_SQLITE.format(table=name)),
            [{"stream": key, "count": e[0], "type": e[1]} for key, e in folded.items()],
        )


class StreamCounts(Projection):
    """Per stream: the number of its events and the type of the last one."""

    name = "bench_stream_counts"
    metadata = sa.MetaData()
    counts = sa.Table(
        READ_MODEL,
        metadata,
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_event_type", sa.Text(), nullable=False),
    )

    @handles(ReadingRecorded)
    async def _recorded(self, event: ReadingRecorded, ctx: ProjectionContext) -> None:
        record = ctx.envelope
        await _upsert(ctx.connection, ctx.tables[READ_MODEL],
                      {record.stream_id: [1, record.event_type]})

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        """The whole batch as one upsert: the same effect as the handler, event by event."""
        folded = _fold([(d.record.stream_id, d.record.event_type) for d in batch])
        if folded:
            await _upsert(model.connection, model.tables[READ_MODEL], folded)


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Rebuild the projection in place from the log of ``size`` events."""
    await load_store(url, size)
    store = await open_store(url, registry, 2)
    engine = create_engine(url)
    projection = StreamCounts()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(StreamCounts.metadata.drop_all)
        with Stopwatch() as sw:
            progress = await rebuild(store, engine, projection, in_place=True, batch_size=BATCH)
        events = StreamCounts.counts.c.events
        async with engine.connect() as conn:
            row = (await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(events), 0))
            )).one()
    finally:
        await engine.dispose()
        await store.close()
    _check("W6", size, progress.events_done, int(row[0]), int(row[1]))
    return Figure(size, sw.seconds)


def _check(workload: str, size: int, processed: int, streams: int, events: int) -> None:
    if (processed, streams, events) != (size, stream_count(size), size):
        raise BenchmarkError(
            f"{workload}: processed {processed} events into {streams} streams counting "
            f"{events} events; expected {size} events over {stream_count(size)} streams: "
            "the fold lost or doubled events"
        )


L5_TABLE = "bench_l5_stream_counts"
L5_CHECKPOINTS = "bench_l5_checkpoints"

# One page after a position: the primary key's index gives the order and the start.
_PAGE = (
    f"SELECT global_position, stream_id, version, event_type, data, metadata, recorded_at "
    f"FROM {BASELINE_TABLE} WHERE global_position > $1 ORDER BY global_position LIMIT $2"
)

_L5_UPSERT = f"""
INSERT INTO {L5_TABLE} AS t (stream_id, events, last_event_type)
SELECT * FROM unnest($1::text[], $2::int[], $3::text[])
ON CONFLICT (stream_id) DO UPDATE
SET events = t.events + excluded.events, last_event_type = excluded.last_event_type
"""

_L5_CHECKPOINT = f"UPDATE {L5_CHECKPOINTS} SET position = $2 WHERE name = $1 AND position = $3"


async def _prepare_l5(conn: asyncpg.Connection) -> None:
    await conn.execute(f"""
        DROP TABLE IF EXISTS {L5_TABLE};
        CREATE TABLE {L5_TABLE} (
            stream_id text PRIMARY KEY, events int NOT NULL, last_event_type text NOT NULL);
        DROP TABLE IF EXISTS {L5_CHECKPOINTS};
        CREATE TABLE {L5_CHECKPOINTS} (name text PRIMARY KEY, position bigint NOT NULL);
        INSERT INTO {L5_CHECKPOINTS} VALUES ('l5', 0);
    """)


async def run_baseline(dsn: str, size: int) -> Figure:
    """L5: keyset pages of 1,000 rows, each folded into one upsert and checkpoint update."""
    await load_postgres_baseline(dsn, size)
    reader = await asyncpg.connect(dsn)
    writer = await asyncpg.connect(dsn)
    processed = 0
    try:
        await _prepare_l5(writer)
        page = await reader.prepare(_PAGE)
        upsert = await writer.prepare(_L5_UPSERT)
        checkpoint = await writer.prepare(_L5_CHECKPOINT)
        with Stopwatch() as sw:
            loads = json.loads
            position = 0
            while rows := await page.fetch(position, BATCH):
                for row in rows:
                    loads(row[4])
                folded = _fold([(row[1], row[3]) for row in rows])
                last = rows[-1][0]
                async with writer.transaction():
                    await upsert.fetch(
                        list(folded), [e[0] for e in folded.values()],
                        [e[1] for e in folded.values()],
                    )
                    await checkpoint.fetch("l5", last, position)
                position = last
                processed += len(rows)
        streams, events = await writer.fetchrow(
            f"SELECT count(*), coalesce(sum(events), 0) FROM {L5_TABLE}"
        )
    finally:
        await reader.close()
        await writer.close()
    _check("L5", size, processed, streams, events)
    return Figure(size, sw.seconds)


WORKLOAD = Workload(
    id="W6",
    title="projection rebuild, per-stream upsert, checkpoint per batch",
    unit="events/s",
    size=1_000_000,
    eventfold=run_eventfold,
    baseline=run_baseline,
    baseline_id="L5",
    target=0.6,
)
"""W6 against L5 (target: eventfold at least 0.6 of the baseline)."""
