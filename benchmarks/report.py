"""Renders outcomes as Markdown tables, ready to paste into docs/BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
from collections.abc import Sequence

from benchmarks.runner import Outcome
from benchmarks.workload import Figure


def _spread(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)``, or the value alone for one repetition."""
    if not values:
        return "—"
    median = format(statistics.median(values), fmt)
    if len(values) == 1:
        return median
    return f"{median} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def _rates(figures: Sequence[Figure]) -> list[float]:
    return [figure.rate for figure in figures]


def _counters(figures: Sequence[Figure]) -> str:
    names = sorted({name for figure in figures for name in figure.counters})
    return "; ".join(
        f"{name} {_spread([figure.counters.get(name, 0) for figure in figures], ',.0f')}"
        for name in names
    )


def ratio(outcome: Outcome) -> float | None:
    """eventfold's median rate over the baseline's, or None when a side is missing."""
    if not outcome.eventfold or not outcome.baseline:
        return None
    return statistics.median(_rates(outcome.eventfold)) / statistics.median(
        _rates(outcome.baseline)
    )


def _ratio_cell(outcome: Outcome) -> str:
    middle = ratio(outcome)
    if middle is None:
        return "—"
    # The range pairs each repetition's two runs, which ran back to back.
    pairs = [e.rate / b.rate for e, b in zip(outcome.eventfold, outcome.baseline, strict=False)]
    if len(pairs) < 2:
        return f"{middle:.2f}"
    return f"{middle:.2f} ({min(pairs):.2f}-{max(pairs):.2f})"


def _target_cell(outcome: Outcome) -> str:
    target = outcome.workload.target
    if target is None:
        return "—"
    middle = ratio(outcome)
    if middle is None:
        return f"≥ {target}"
    return f"≥ {target}: {'met' if middle >= target else 'MISSED'}"


def _rate_cell(figures: Sequence[Figure]) -> str:
    return _spread(_rates(figures), ",.0f")


def table(outcomes: Sequence[Outcome]) -> str:
    """The one table of the figures: per workload, eventfold on PostgreSQL, its raw
    baseline, their ratio against the target, and eventfold on SQLite (median (min-max)
    of the repetitions; counters such as W3's conflicts or W4's load times in the notes)."""
    lines = [
        "| workload | unit | eventfold (PostgreSQL) | baseline | ratio | target "
        "| eventfold (SQLite) | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for outcome in outcomes:
        if not (outcome.eventfold or outcome.baseline or outcome.sqlite):
            continue
        w = outcome.workload
        baseline = (
            f"{w.baseline_id} {_rate_cell(outcome.baseline)}" if outcome.baseline
            else w.baseline_id or "—"
        )
        notes = _counters(outcome.eventfold) or _counters(outcome.sqlite)
        lines.append(
            f"| {w.id} {w.title} | {w.unit} | {_rate_cell(outcome.eventfold)} | {baseline} "
            f"| {_ratio_cell(outcome)} | {_target_cell(outcome)} "
            f"| {_rate_cell(outcome.sqlite)} | {notes} |"
        )
    return "\n".join(lines)


def render(outcomes: Sequence[Outcome], pg_version: str | None, repeat: int) -> str:
    """The whole report: machine facts, then the table of the figures."""
    parts = [
        "## Machine",
        "",
        f"- CPU cores: {os.cpu_count()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}",
        f"- {pg_version or 'PostgreSQL not used'}",
        f"- repetitions per workload: {repeat}",
    ]
    return "\n".join([*parts, "", table(outcomes)])
