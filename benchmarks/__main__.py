"""``python -m benchmarks``: run the workloads of shared/workloads.md and print the table.

    python -m benchmarks [--dsn postgresql://postgres@127.0.0.1:5432/eventfold_bench]
                         [--only W1,W2] [--repeat 3] [--sqlite | --sqlite-only]
                         [--baselines-only] [--size W1=2000] [--chart docs/benchmarks.png]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from benchmarks.catalog import select
from benchmarks.chart import draw
from benchmarks.database import DEFAULT_DSN, database_name, server_version
from benchmarks.report import render
from benchmarks.runner import run
from benchmarks.workload import BenchmarkError
from eventfold.eventstore import EventfoldError


def _sizes(items: list[str]) -> dict[str, int]:
    sizes = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value.isdigit() or int(value) < 1:
            raise BenchmarkError(f"--size {item!r}: write it as ID=COUNT, e.g. --size W1=2000")
        sizes[name.strip().upper()] = int(value)
    return sizes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark eventfold against raw asyncpg baselines (shared/workloads.md).",
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN,
                        help="PostgreSQL URL of a database of the benchmark's own; created if "
                             f"missing, its tables emptied (default: {DEFAULT_DSN})")
    parser.add_argument("--only", help="comma-separated workload ids, e.g. W1,W2 or L3")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default: 3)")
    parser.add_argument("--sqlite", action="store_true",
                        help="also run the eventfold side on SQLite (a temp file)")
    parser.add_argument("--sqlite-only", action="store_true",
                        help="run the eventfold side on SQLite alone, no PostgreSQL")
    parser.add_argument("--baselines-only", action="store_true",
                        help="run the raw asyncpg baselines alone")
    parser.add_argument("--size", action="append", default=[], metavar="ID=COUNT",
                        help="override a workload's size (events, appends or rows)")
    parser.add_argument("--chart", type=Path, metavar="PNG",
                        help="also draw eventfold against its baselines into this PNG "
                             "(needs matplotlib: pip install 'eventfold[bench]')")
    return parser


async def _main(args: argparse.Namespace) -> str:
    if args.repeat < 1:
        raise BenchmarkError("--repeat must be at least 1")
    postgres = not args.sqlite_only
    if postgres:
        database_name(args.dsn)  # refuse a forbidden database before doing anything
    workloads = select(args.only.split(",") if args.only else None)
    outcomes = await run(
        args.dsn,
        workloads,
        repeat=args.repeat,
        postgres=postgres,
        sqlite=args.sqlite or args.sqlite_only,
        eventfold=not args.baselines_only,
        sizes=_sizes(args.size),
    )
    version = await server_version(args.dsn) if postgres else None
    if args.chart is not None:
        draw(outcomes, args.chart)
    return render(outcomes, version, args.repeat)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the report; exit 2 with the reason on a setup error."""
    args = _parser().parse_args(argv)
    try:
        report = asyncio.run(_main(args))
    except (BenchmarkError, EventfoldError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
