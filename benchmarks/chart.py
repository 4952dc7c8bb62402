"""The chart of a run: eventfold against its raw baselines, one bar per workload (a PNG).

Each bar is eventfold's median rate over its baseline's in the same run (1.0: as fast as
raw asyncpg), its whisker the range of the per-repetition ratios, its tick the target.
Workloads without a baseline (W3, W4) have no bar: their figures are in the table.
matplotlib is an optional extra: ``pip install 'eventfold[bench]'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import ratio
from benchmarks.runner import Outcome
from benchmarks.workload import BenchmarkError


def draw(outcomes: Sequence[Outcome], path: Path) -> None:
    """Write the chart of the outcomes that have both sides to ``path`` (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BenchmarkError(
            "--chart needs matplotlib: pip install 'eventfold[bench]' (or leave --chart out)"
        ) from exc
    bars = [(o, r) for o in outcomes if (r := ratio(o)) is not None]
    if not bars:
        raise BenchmarkError(
            "no workload ran with its baseline, so there is nothing to chart: run a workload "
            "with one (W1, W2, W5, W6...) on PostgreSQL, without --baselines-only"
        )
    labels = [f"{o.workload.id} vs {o.workload.baseline_id}" for o, _ in bars]
    middles = [r for _, r in bars]
    lows, highs = [], []
    for outcome, middle in bars:
        pairs = [
            e.rate / b.rate for e, b in zip(outcome.eventfold, outcome.baseline, strict=False)
        ]
        lows.append(middle - min(pairs))
        highs.append(max(pairs) - middle)
    figure, axes = plt.subplots(figsize=(7, 0.55 * len(bars) + 1.4))
    rows = range(len(bars))
    axes.barh(rows, middles, xerr=[lows, highs], color="#4c72b0", capsize=3)
    for row, (outcome, middle) in zip(rows, bars, strict=True):
        target = outcome.workload.target
        if target is not None:
            axes.plot([target, target], [row - 0.4, row + 0.4], color="#c44e52", linewidth=2)
        axes.annotate(f"{middle:.2f}", (middle, row), xytext=(4, -9),
                      textcoords="offset points", fontsize=8)
    axes.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.set_yticks(list(rows), labels)
    axes.invert_yaxis()
    axes.set_xlabel("eventfold / raw asyncpg baseline (median; whisker: per repetition; "
                    "red: target)", fontsize=8)
    axes.set_title("eventfold against its baselines (PostgreSQL, same run)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
