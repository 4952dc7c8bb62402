"""W7 partitioned rebuild: W6's projection over the same log with 1, 2 and 4 partitions.

Two ways of running the partitions, each a variant:

- ``W7-1``, ``W7-2``, ``W7-4``: ``rebuild(..., in_place=True)`` of the projection declared
  with that many partitions; the partitions replay as tasks of this one process.
- ``W7-2-PROC``, ``W7-4-PROC``: the tables are reset, then as many runner processes as
  partitions share them (one each) until every partition's checkpoint reaches the head:
  the partitions replay in parallel on the machine's cores, past the GIL.

Each partition reads the whole global log and keeps the events of its streams (filtered
in Python after the read): the reading is repeated per partition, the folding and writing
is split. There is no baseline; compare the variants' rates with ``W7-1``'s.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import sqlalchemy as sa

from benchmarks.global_log import load_store
from benchmarks.payload import bench_registry
from benchmarks.w6_projection_rebuild import BATCH, StreamCounts, _check
from benchmarks.workload import (
    BenchmarkError,
    EventfoldSide,
    Figure,
    Stopwatch,
    Workload,
    open_store,
)
from eventfold.eventstore import EventRegistry
from eventfold.eventstore.engine import create_engine
from eventfold.projections import Projection, Runner, rebuild, reset, status

REPO = Path(__file__).resolve().parent.parent


def partitioned(count: int) -> type[StreamCounts]:
    """W6's projection declared with ``count`` partitions."""
    return type(f"StreamCounts{count}", (StreamCounts,), {"partitions": count})


async def _result(url: str, projection: Projection) -> tuple[int, int]:
    engine = create_engine(url)
    try:
        events = StreamCounts.counts.c.events
        async with engine.connect() as conn:
            row = (await conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(events), 0))
            )).one()
        return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def _fresh(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(StreamCounts.metadata.drop_all)
            await conn.exec_driver_sql(
                "DELETE FROM eventfold_checkpoints WHERE name LIKE 'bench_stream_counts%'"
            )
    finally:
        await engine.dispose()


def _in_process(count: int) -> EventfoldSide:
    async def run(url: str, registry: EventRegistry, size: int) -> Figure:
        await load_store(url, size)
        await _fresh(url)
        store = await open_store(url, registry, 2 * count)
        engine = create_engine(url, pool_size=max(5, 2 * count))
        projection = partitioned(count)()
        try:
            with Stopwatch() as sw:
                progress = await rebuild(
                    store, engine, projection, in_place=True, batch_size=BATCH
                )
        finally:
            await engine.dispose()
            await store.close()
        _check(f"W7-{count}", size, progress.events_done, *await _result(url, projection))
        return Figure(size, sw.seconds)

    return run


_CHILD = """
import asyncio, sys
from benchmarks.w7_partitioned_rebuild import serve_partition
asyncio.run(serve_partition(sys.argv[1], int(sys.argv[2])))
"""


async def serve_partition(url: str, count: int) -> None:
    """A runner process of the W6 projection with ``count`` partitions; exits once no
    partition has events left (whoever holds it), as ``status`` reports."""
    store = await open_store(url, bench_registry(), 2)
    engine = create_engine(url)
    try:
        projection = partitioned(count)()
        runner = Runner(
            store, [projection], engine=engine, batch_size=BATCH, lease_ttl=2.0,
            lease_retry=0.1, idle_wait=0.1,
        )
        async with runner:
            while True:
                await asyncio.sleep(0.2)
                [total] = await status(store, engine, [projection], count_limit=1)
                if total.events_behind == 0:
                    return
    finally:
        await engine.dispose()
        await store.close()


def _processes(count: int) -> EventfoldSide:
    async def run(url: str, registry: EventRegistry, size: int) -> Figure:
        if not url.startswith("postgres"):
            raise BenchmarkError("W7-PROC runs on PostgreSQL only")
        await load_store(url, size)
        await _fresh(url)
        engine = create_engine(url)
        projection = partitioned(count)()
        try:
            await reset(engine, projection)
        finally:
            await engine.dispose()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with Stopwatch() as sw:
            children = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", _CHILD, url, str(count), cwd=REPO, env=env,
                    stdout=asyncio.subprocess.DEVNULL,
                )
                for _ in range(count)
            ]
            codes = await asyncio.gather(*(child.wait() for child in children))
        if any(codes):
            raise BenchmarkError(f"W7-{count}-PROC: a runner process failed ({codes})")
        streams, events = await _result(url, projection)
        _check(f"W7-{count}-PROC", size, events, streams, events)
        return Figure(size, sw.seconds)

    return run


WORKLOADS = (
    *(
        Workload(
            id=f"W7-{count}",
            title=f"partitioned rebuild, {count} partition(s) as tasks of one process",
            unit="events/s",
            size=1_000_000,
            eventfold=_in_process(count),
        )
        for count in (1, 2, 4)
    ),
    *(
        Workload(
            id=f"W7-{count}-PROC",
            title=f"partitioned rebuild, {count} partitions in {count} runner processes",
            unit="events/s",
            size=1_000_000,
            eventfold=_processes(count),
            on_sqlite=False,
        )
        for count in (2, 4)
    ),
)
"""W7's variants (``--only W7`` selects them all)."""
