"""Runs workloads: each repetition starts from empty tables; eventfold and baseline alternate.

Alternating the two sides within each repetition (rather than all of one, then all of the
other) spreads the shared machine's noise over both, which keeps their ratio honest.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.database import (
    asyncpg_dsn,
    empty_baseline_table,
    empty_store_tables,
    ensure_database,
    migrate_store,
    store_url,
)
from benchmarks.payload import bench_registry
from benchmarks.workload import Figure, Workload


@dataclass
class Outcome:
    """The figures of one workload over all repetitions, per side."""

    workload: Workload
    eventfold: list[Figure] = field(default_factory=list)
    baseline: list[Figure] = field(default_factory=list)
    sqlite: list[Figure] = field(default_factory=list)


Progress = Callable[[str], None]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _describe(workload: Workload, side: str, repetition: int, figure: Figure) -> str:
    counters = "".join(f", {name} {value}" for name, value in figure.counters.items())
    return (
        f"  {workload.id} {side:<9} #{repetition}: {figure.rate:>12,.0f} {workload.unit} "
        f"({figure.count} in {figure.seconds:.2f} s{counters})"
    )


async def run(
    dsn: str,
    workloads: Sequence[Workload],
    *,
    repeat: int = 3,
    postgres: bool = True,
    sqlite: bool = False,
    eventfold: bool = True,
    sizes: Mapping[str, int] | None = None,
    progress: Progress = _to_stderr,
) -> list[Outcome]:
    """Run the workloads ``repeat`` times each and return their figures.

    ``postgres``: run the eventfold and baseline sides on PostgreSQL at ``dsn`` (which
    may be empty otherwise);
    ``sqlite``: run the eventfold sides on a SQLite temp file too; ``eventfold=False``
    runs the baselines alone; ``sizes`` overrides workloads' sizes by id.
    """
    sizes = sizes or {}
    registry = bench_registry()
    url = pg = ""
    if postgres:
        url, pg = store_url(dsn), asyncpg_dsn(dsn)
        await ensure_database(dsn)
        if eventfold and any(w.eventfold for w in workloads):
            await migrate_store(url)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="eventfold-bench-") as tmp:
        for workload in workloads:
            outcome = Outcome(workload)
            size = sizes.get(workload.id, workload.size)
            for repetition in range(1, repeat + 1):
                if postgres and eventfold and workload.eventfold is not None:
                    await empty_store_tables(url)
                    figure = await workload.eventfold(url, registry, size)
                    outcome.eventfold.append(figure)
                    progress(_describe(workload, "eventfold", repetition, figure))
                if postgres and workload.baseline is not None:
                    await empty_baseline_table(pg)
                    figure = await workload.baseline(pg, size)
                    outcome.baseline.append(figure)
                    progress(_describe(workload, workload.baseline_id or "baseline",
                                       repetition, figure))
                if sqlite and eventfold and workload.eventfold and workload.on_sqlite:
                    # A fresh file per run: the SQLite side's "empty tables".
                    path = Path(tmp) / f"{workload.id.lower()}-{repetition}.db"
                    sqlite_url = f"sqlite:///{path}"
                    await migrate_store(sqlite_url)
                    figure = await workload.eventfold(sqlite_url, registry, size)
                    outcome.sqlite.append(figure)
                    progress(_describe(workload, "sqlite", repetition, figure))
                    path.unlink(missing_ok=True)
            outcomes.append(outcome)
    return outcomes
