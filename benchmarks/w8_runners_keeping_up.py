"""W8 runners keeping up: 4 runner processes share W6's projection in 4 partitions while
W1's writers (8, one event per append, as fast as they go) append for ``size`` seconds.

Every second the lag is sampled as ``status`` reports it: in events, the sum of the
partitions' unprocessed events; in seconds, the age of the oldest of them. The samples go
to stderr as they are taken; the figure is the append rate, with the lag's maximum and its
value at the end (once the writers stop, and after the runners drain) as counters.
PostgreSQL only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from benchmarks.payload import SAMPLE, bench_registry
from benchmarks.w1_append_single import EVENTS_PER_STREAM, WRITERS
from benchmarks.w7_partitioned_rebuild import REPO, partitioned
from benchmarks.workload import BenchmarkError, Figure, Workload, open_store
from eventfold.eventstore import EventRegistry
from eventfold.eventstore.engine import create_engine
from eventfold.projections import Runner, reset, status

RUNNERS = 4
PARTITIONS = 4

_CHILD = """
import asyncio, sys
from benchmarks.w8_runners_keeping_up import serve
asyncio.run(serve(sys.argv[1]))
"""



async def serve(url: str) -> None:
    """A runner process of the 4-partition projection, until it is terminated."""
    store = await open_store(url, bench_registry(), 2)
    engine = create_engine(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        runner = Runner(
            store, [partitioned(PARTITIONS)()], engine=engine, batch_size=1000,
            lease_ttl=2.0, lease_retry=0.2, idle_wait=1.0,
        )
        async with runner:
            await stop.wait()
    finally:
        await engine.dispose()
        await store.close()


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Append for ``size`` seconds with 4 runner processes following; sample the lag."""
    if not url.startswith("postgres"):
        raise BenchmarkError("W8 runs on PostgreSQL only")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(partitioned(PARTITIONS).metadata.drop_all)
            await conn.exec_driver_sql(
                "DELETE FROM eventfold_checkpoints WHERE name LIKE 'bench_stream_counts%'"
            )
        await reset(engine, partitioned(PARTITIONS)())
    finally:
        await engine.dispose()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, url, cwd=REPO, env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        for _ in range(RUNNERS)
    ]
    store = await open_store(url, registry, WRITERS + 2)
    probe = create_engine(url)
    projection = partitioned(PARTITIONS)()

    async def lag() -> tuple[int, float]:
        [total] = await status(store, probe, [projection], count_limit=100_000)
        return total.events_behind, total.seconds_behind

    appended = 0
    lags: list[tuple[float, int, float]] = []
    try:
        await asyncio.sleep(3)  # the runners start and share the partitions out
        deadline = time.monotonic() + size

        async def writer(index: int) -> None:
            nonlocal appended
            n = 0
            while time.monotonic() < deadline:
                stream, version = divmod(n, EVENTS_PER_STREAM)
                await store.append(
                    f"Reading-w{index}-{stream}", [SAMPLE], expected_version=version
                )
                appended += 1
                n += 1

        async def sample(until: float) -> None:
            started = time.monotonic()
            while time.monotonic() < until:
                behind, seconds = await lag()
                lags.append((time.monotonic() - started, behind, seconds))
                print(f"W8 t={lags[-1][0]:5.1f}s lag {behind} events, {seconds:.2f} s",
                      file=sys.stderr, flush=True)
                await asyncio.sleep(1.0)

        began = time.monotonic()
        await asyncio.gather(*(writer(i) for i in range(WRITERS)), sample(deadline))
        seconds = time.monotonic() - began
        writing = list(lags)
        end = lags[-1] if lags else (0.0, 0, 0.0)
        drained = time.monotonic()
        while True:  # after the writers stop: how long until the runners are level
            if (await lag())[0] == 0 or time.monotonic() - drained > 60:
                break
            await asyncio.sleep(0.1)
        drain_ms = int((time.monotonic() - drained) * 1000)
    finally:
        for child in children:
            if child.returncode is None:
                child.terminate()
        await asyncio.gather(*(child.wait() for child in children))
        await probe.dispose()
        await store.close()
    return Figure(appended, seconds, {
        "max_lag_events": max((lag[1] for lag in writing), default=0),
        "max_lag_ms": int(1000 * max((lag[2] for lag in writing), default=0.0)),
        "end_lag_events": end[1],
        "end_lag_ms": int(1000 * end[2]),
        "drain_ms": drain_ms,
    })


WORKLOAD = Workload(
    id="W8",
    title="4 runner processes x 4 partitions following W1's appends (size: seconds)",
    unit="appends/s",
    size=60,
    eventfold=run_eventfold,
    on_sqlite=False,
)
"""W8: the figure is the append rate; the lag is in the counters and on stderr."""
