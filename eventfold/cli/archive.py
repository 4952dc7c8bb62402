"""``eventfold streams archive`` and ``eventfold streams expire``: move a stream's events to
the archive, and apply the application's retention policies (docs/lifecycle.md)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stderr_console, stdout_console
from eventfold.config import Settings
from eventfold.eventstore import RetentionReport
from eventfold.eventstore.archive_run import ArchiveProgress, archive_in_steps
from eventfold.status import duration

DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Change nothing; say what would go.")]


class _Bar:
    """Draws ``ArchiveProgress`` reports as a rich progress bar on stderr."""

    def __init__(self, stream_id: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]archiving {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]} ev/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=stderr_console(),
            auto_refresh=False,
        )
        self.task: TaskID = self.progress.add_task(
            escape(stream_id), total=None, events="0", rate="-", eta="?"
        )
        self.drawn = False

    def __call__(self, report: ArchiveProgress) -> None:
        if not self.drawn:
            self.drawn = True
            self.progress.start()
        eta = report.eta_seconds
        self.progress.update(
            self.task,
            total=report.total,
            completed=report.moved,
            events=f"{report.moved:,}/{report.total:,}",
            rate=f"{report.rate:,.0f}",
            eta="?" if eta is None else duration(eta),
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


def archive_command(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(help="The stream, e.g. Order-123.")],
    before: Annotated[
        int | None,
        typer.Option(
            "--before",
            min=1,
            show_default=False,
            help="Only the events below this version (default: all but the last).",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Move a stream's old events out of the hot table into the archive (its last event
    stays); they read again with `read_stream_with_archive`."""

    async def work(settings: Settings) -> ArchiveProgress:
        async with settings.connect() as store:
            with _Bar(stream_id).shown() as bar:
                return await archive_in_steps(
                    store,
                    stream_id,
                    before=before,
                    dry_run=dry_run,
                    on_progress=None if as_json else bar,
                )

    done = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines(
            [
                {
                    "stream_id": done.stream_id,
                    "dry_run": dry_run,
                    "events": done.total if dry_run else done.moved,
                    "seconds": round(done.seconds, 3),
                }
            ]
        )
        return
    if dry_run:
        line = f"would archive {done.total:,} events of {escape(stream_id)}"
    else:
        line = (
            f"archived {done.moved:,} events of {escape(stream_id)} in "
            f"{duration(done.seconds)} ({done.rate:,.0f} events/s)"
        )
    stdout_console().print(line)


class _Examined:
    """Draws a retention run's progress on stderr: streams examined, what went, the rate
    (how many streams the policies' categories hold is not known ahead)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]applying retention"),
            TextColumn("{task.fields[examined]} streams examined"),
            TextColumn("{task.fields[expired]} expired"),
            TextColumn("{task.fields[rate]} streams/s"),
            console=stderr_console(),
            auto_refresh=False,
        )
        self.task: TaskID = self.progress.add_task("", examined="0", expired="0", rate="-")
        self.drawn = False

    def __call__(self, report: RetentionReport) -> None:
        if not self.drawn:
            self.drawn = True
            self.progress.start()
        elapsed = time.monotonic() - self.started
        rate = f"{report.examined / elapsed:,.0f}" if elapsed > 0 else "-"
        self.progress.update(
            self.task,
            examined=f"{report.examined:,}",
            expired=f"{len(report.expired):,}",
            rate=rate,
        )
        self.progress.refresh()

    @contextlib.contextmanager
    def shown(self) -> Iterator[_Examined]:
        """Draw the line while the block runs (once it reports)."""
        try:
            yield self
        finally:
            if self.drawn:
                self.progress.stop()


def expire_command(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    now: Annotated[
        datetime | None,
        typer.Option(
            "--now",
            show_default=False,
            help="Count ages from this time (UTC, e.g. 2027-01-31T00:00:00) instead "
            "of the current time.",
        ),
    ] = None,
    as_json: JsonOption = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Apply the application's retention policies once: delete, truncate or archive what
    they no longer keep (`eventfold run --retention-every` does it on a schedule)."""

    async def work(settings: Settings) -> RetentionReport:
        async with settings.connect_app("`eventfold streams expire`") as running:
            if not running.app.retention:
                stderr_console().print(
                    "the application has no retention policies: give them with "
                    "App(retention=[Retention(...)])"
                )
            at = None if now is None else now.replace(tzinfo=now.tzinfo or UTC)
            with _Examined().shown() as shown:
                return await running.apply_retention(
                    now=at, dry_run=dry_run, on_progress=None if as_json else shown
                )

    report = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines(
            [
                {
                    "dry_run": dry_run,
                    "examined": report.examined,
                    "skipped": report.skipped,
                    "expired": [
                        {
                            "stream_id": e.stream_id,
                            "action": e.action,
                            "before": e.before,
                            "events": e.events,
                        }
                        for e in report.expired
                    ],
                }
            ]
        )
        return
    console = stdout_console()
    console.print(("dry run: " if dry_run else "") + report.summary())
    if report.expired:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("stream", style="bold")
        table.add_column("would" if dry_run else "done")
        table.add_column("before version", justify="right")
        table.add_column("events", justify="right")
        for expiry in report.expired:
            table.add_row(
                escape(expiry.stream_id), expiry.action, str(expiry.before), str(expiry.events)
            )
        console.print(table)
