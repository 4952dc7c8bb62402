"""The benchmark harness still runs: every workload, both sides, with tiny counts.

Not a benchmark: no timing is asserted. It runs against the real test PostgreSQL server, in
a throw-away database of its own (the harness empties its tables, so never in ``test``),
and on SQLite, then checks that each side did all of its work and the report renders.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from benchmarks import w4_aggregate_load
from benchmarks.catalog import WORKLOADS, select
from benchmarks.chart import draw
from benchmarks.database import drop_database
from benchmarks.report import render
from benchmarks.runner import run
from benchmarks.workload import BenchmarkError

pytestmark = pytest.mark.postgres

TINY = {
    "W1": 40, "W2": 40, "W3": 12, "L3": 200,
    "W4-1K": 30, "W4-1K-SNAP": 30, "W4-10K": 40, "W4-10K-SNAP": 40, "W5": 500, "W6": 500,
    "W9": 300,
    "W7-1": 500, "W7-2": 500, "W7-4": 500, "W7-2-PROC": 500, "W7-4-PROC": 500, "W8": 2, "W10": 500,
}
"""Sizes small enough for a few seconds in all; one entry per workload."""


def _expected_count(workload_id: str) -> int:
    """What a figure counts: W4's count loads of its stream (``size`` is the stream's
    length), W8's the appends made in ``size`` seconds (-1: any), every other workload
    counts ``size`` units."""
    if workload_id == "W8":
        return -1
    return w4_aggregate_load.LOADS if workload_id.startswith("W4-") else TINY[workload_id]


@pytest.fixture
async def bench_dsn(pg_server_url: str) -> AsyncIterator[str]:
    """A database of the smoke test's own on the test server, dropped afterwards.

    Not the session's ``pg_url`` database: the harness empties the eventfold tables, which
    would pull rows from under the other tests of the session.
    """
    dsn = make_url(pg_server_url).set(
        drivername="postgresql", database=f"eventfold_bench_smoke_{os.getpid()}"
    ).render_as_string(hide_password=False)
    yield dsn
    await drop_database(dsn)


def test_every_workload_has_a_tiny_size() -> None:
    assert {w.id for w in WORKLOADS} == set(TINY)


async def test_every_workload_runs_on_both_sides(bench_dsn: str, tmp_path: Path) -> None:
    outcomes = await run(
        bench_dsn, WORKLOADS, repeat=1, sqlite=True, sizes=TINY, progress=lambda line: None
    )

    for outcome in outcomes:
        w, size = outcome.workload, _expected_count(outcome.workload.id)
        expected_sides = {
            "eventfold": w.eventfold is not None,
            "baseline": w.baseline is not None,
            "sqlite": w.eventfold is not None and w.on_sqlite,
        }
        for side, expected in expected_sides.items():
            figures = getattr(outcome, side)
            counts = [f.count if size >= 0 or f.count <= 0 else -1 for f in figures]
            assert counts == ([size] if expected else []), (w.id, side)
            assert all(f.seconds > 0 for f in figures)
    contention = next(o for o in outcomes if o.workload.id == "W3")
    assert "conflicts" in contention.eventfold[0].counters
    loads = [o for o in outcomes if o.workload.id.startswith("W4-")]
    assert len(loads) == 4
    for outcome in loads:
        for figure in outcome.eventfold + outcome.sqlite:
            assert 0 < figure.counters["min_us"] <= figure.counters["median_us"]
            assert figure.counters["median_us"] <= figure.counters["max_us"]
    report = render(outcomes, "PostgreSQL (smoke)", 1)
    for w in WORKLOADS:
        assert f"| {w.id} " in report
    chart = tmp_path / "benchmarks.png"
    draw(outcomes, chart)
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_a_chart_needs_a_workload_run_with_its_baseline(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="nothing to chart"):
        draw([], tmp_path / "none.png")


def test_the_test_database_is_refused() -> None:
    with pytest.raises(BenchmarkError, match="refusing"):
        from benchmarks.database import database_name

        database_name("postgresql://postgres@127.0.0.1:5432/test")


def test_a_baseline_id_selects_its_workload() -> None:
    assert [w.id for w in select(["l1", "W3"])] == ["W1", "W3"]
    assert [w.id for w in select(["L4", "l5"])] == ["W5", "W6"]


def test_a_family_id_selects_its_variants() -> None:
    assert [w.id for w in select(["W4"])] == ["W4-1K", "W4-1K-SNAP", "W4-10K", "W4-10K-SNAP"]
    assert [w.id for w in select(["w4-10k"])] == ["W4-10K"]
    with pytest.raises(BenchmarkError, match="unknown workload W99"):
        select(["W99"])
