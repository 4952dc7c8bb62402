"""``eventfold copy``, ``export`` and ``import``: move a whole store, to another store or
through a file of CloudEvents JSON lines (``eventfold.eventstore.transfer``)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from eventfold.cli.execution import run
from eventfold.cli.options import DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stderr_console, stdout_console
from eventfold.config import Settings
from eventfold.eventstore import EventRegistry, connect, masked
from eventfold.eventstore.transfer import (
    OnProgress,
    TransferProgress,
    TransferResult,
    copy_store,
    export_events,
    import_file,
)
from eventfold.snapshots import copy_snapshots
from eventfold.status import duration


class _Bar:
    """Draws ``TransferProgress`` reports as a rich progress bar on stderr: events, rate
    and time left."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]} ev/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=stderr_console(),
            auto_refresh=False,  # redrawn at each report, from the event loop
        )
        self.task: TaskID = self.progress.add_task(
            what, total=None, events=0, rate="-", eta="?"
        )
        self.phase = ""
        self.phase_started = self.last_report = self.started
        self.drawn = False

    def __call__(self, report: TransferProgress) -> None:
        if not self.drawn:  # from the first report on: a refusal prints its line alone
            self.drawn = True
            self.progress.start()
        now = time.monotonic()
        if report.phase != self.phase:
            # The new phase began when the last report of the one before came.
            self.phase, self.phase_started = report.phase, self.last_report
        self.last_report = now
        elapsed = now - self.phase_started
        share = None if not report.total else min(report.done / report.total, 1.0)
        eta = "?" if not share or elapsed <= 0 else duration(elapsed * (1 - share) / share)
        rate = f"{report.events / elapsed:,.0f}" if elapsed > 0 else "-"
        self.progress.update(
            self.task,
            description=self.what if report.phase == "copying" else f"{self.what}: verifying",
            total=report.total,
            completed=report.done, events=f"{report.events:,}",
            rate=rate, eta=eta,
        )
        self.progress.refresh()

    @contextlib.contextmanager
    def shown(self) -> Iterator[_Bar]:
        """Draw the bar while the block runs (once it reports)."""
        try:
            yield self
        finally:
            if self.drawn:
                self.progress.stop()


def _report(
    verb: str, result: TransferResult, source: str, target: str, started: float,
    as_json: bool,
) -> None:
    elapsed = time.monotonic() - started
    if as_json:
        print_json_lines([{
            "source": source, "target": target, "written": result.written,
            "events": result.events, "keys": result.keys, "checksum": result.checksum,
            "seconds": round(elapsed, 3),
        }])
        return
    resumed = "" if result.written == result.events else (
        f" ({result.events - result.written} were there from an earlier run)"
    )
    keys = f" and {result.keys:,} keys of data subjects" if result.keys else ""
    stdout_console().print(
        f"{verb} {result.written:,} events from {escape(source)} to {escape(target)} in "
        f"{duration(elapsed)} ({result.written / max(elapsed, 1e-6):,.0f} events/s){resumed}; "
        f"verified {result.events:,} events{keys} (counts and checksums match)"
    )


def copy_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="The store to copy: a database URL.")],
    target: Annotated[
        str,
        typer.Argument(help="The store to copy into (migrated, and empty or an earlier copy)."),
    ],
    snapshots: Annotated[
        bool, typer.Option("--snapshots", help="Copy the aggregates' snapshots too.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Copy every event of one store into another, between SQLite and PostgreSQL.

    Events keep their ids, streams, versions, types, schema versions, data, metadata and
    times; the target numbers them its own way, in the same order. Run it again after an
    interruption: it goes on where it stopped. At the end counts and checksums of both
    logs are compared. The keys of data subjects (personal data) are copied with the
    events; forgotten subjects stay forgotten."""
    started = time.monotonic()

    async def work(settings: Settings) -> TransferResult:
        async with connect(source, EventRegistry()) as source_store, connect(
            target, EventRegistry()
        ) as target_store:
            with _shown("copying", as_json) as on_progress:
                result = await copy_store(source_store, target_store, on_progress=on_progress)
        if snapshots:
            await copy_snapshots(source, target)
        return result

    result = run(ctx, work)
    _report("copied", result, masked(source), masked(target), started, as_json)


def export_command(
    ctx: typer.Context,
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="The file to write; - for stdout."),
    ] = "-",
    reveal_personal_data: Annotated[
        bool,
        typer.Option(
            "--reveal-personal-data",
            help="Write personal data in the clear (a file cannot carry its keys); "
            "`eventfold import` seals it again.",
        ),
    ] = False,
    database: DatabaseOption = None,
) -> None:
    """Write every event of the store as CloudEvents 1.0 JSON, one per line, in log order.

    `eventfold import` reads it back into another store. A store holding personal data is
    refused unless --reveal-personal-data (a file cannot carry its keys; `eventfold copy`
    does)."""
    started = time.monotonic()
    source_url = ""

    async def work(settings: Settings) -> TransferResult:
        nonlocal source_url
        source_url = masked(settings.database_url)
        async with connect(settings.database_url, EventRegistry()) as store:
            with _output(output) as sink, _Bar("exporting").shown() as bar:
                return await export_events(
                    store, sink, reveal_personal_data=reveal_personal_data, on_progress=bar
                )

    result = run(ctx, work, database=database)
    elapsed = time.monotonic() - started
    stderr_console().print(
        f"exported {result.events:,} events from {escape(source_url)} to "
        f"{escape('stdout' if output == '-' else output)} in {duration(elapsed)}, checksum "
        f"{result.checksum[:16]}"
    )


def import_command(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(help="CloudEvents JSON lines written by `eventfold export`; - for stdin."),
    ],
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import events exported by `eventfold export` into the store (empty, or an earlier,
    interrupted import of the same file, which it continues), then verify the count and
    checksum."""
    if file != "-" and not os.access(file, os.R_OK):
        raise typer.BadParameter(f"cannot read {file}", param_hint="FILE")
    started = time.monotonic()
    target_url = ""

    async def work(settings: Settings) -> TransferResult:
        nonlocal target_url
        target_url = masked(settings.database_url)
        async with connect(settings.database_url, EventRegistry()) as store:
            with _input(file) as (lines, size), _shown("importing", as_json) as on_progress:
                return await import_file(
                    lines, store, name="stdin" if file == "-" else file, size=size,
                    on_progress=on_progress,
                )

    result = run(ctx, work, database=database)
    _report("imported", result, "stdin" if file == "-" else file, target_url, started, as_json)


@contextlib.contextmanager
def _shown(what: str, quiet: bool) -> Iterator[OnProgress]:
    """A progress bar for the block (nothing under ``--json``)."""
    if quiet:
        yield lambda _: None
        return
    with _Bar(what).shown() as bar:
        yield bar


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        return
    with open(path, "wb") as sink:
        yield sink


@contextlib.contextmanager
def _input(path: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if path == "-":
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as source:
        yield source, os.fstat(source.fileno()).st_size if Path(path).is_file() else None
