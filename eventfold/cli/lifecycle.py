"""``eventfold streams delete|truncate`` and ``eventfold scavenge``: end streams, cut their
beginnings, and remove what that hid (docs/lifecycle.md)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from eventfold.cli.execution import run
from eventfold.cli.options import DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stderr_console, stdout_console
from eventfold.config import Settings
from eventfold.errors import StreamNotFound
from eventfold.eventstore import AppendResult, EventStore, Scavenge, ScavengeProgress
from eventfold.eventstore.lifecycle import OnScavengeProgress
from eventfold.status import duration

DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")
]
ExpectedOption = Annotated[
    int | None,
    typer.Option(
        "--expected-version",
        min=0,
        help="Only if the stream is at this version (optimistic concurrency).",
        show_default=False,
    ),
]


def delete_command(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(help="The stream, e.g. Order-123.")],
    hard: Annotated[
        bool,
        typer.Option("--hard", help="A tombstone: the stream takes no more events, ever."),
    ] = False,
    expected_version: ExpectedOption = None,
    dry_run: DryRunOption = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a stream: it reads as not found (soft: until new events recreate it; --hard:
    for good). Its events leave the table at the next `eventfold scavenge`."""

    async def work(settings: Settings) -> tuple[int, AppendResult | None]:
        async with settings.connect() as store:
            version = await _existing(store, stream_id)
            if dry_run:
                return version, None
            return version, await store.delete_stream(
                stream_id, expected_version=expected_version, hard=hard
            )

    version, result = run(ctx, work, database=database)
    kind = "hard" if hard else "soft"
    if as_json:
        print_json_lines(
            [
                {
                    "stream_id": stream_id,
                    "dry_run": dry_run,
                    "hard": hard,
                    "version": version,
                    "deleted_at": None if result is None else result.version,
                }
            ]
        )
        return
    if result is None:
        line = f"would delete stream {stream_id!r} at version {version} ({kind} delete)"
    else:
        line = (
            f"deleted stream {stream_id!r} ({kind}): StreamDeleted is its version "
            f"{result.version}; `eventfold scavenge` removes its events"
        )
    stdout_console().print(escape(line))


def truncate_command(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(help="The stream, e.g. Order-123.")],
    before: Annotated[
        int, typer.Option("--before", min=1, help="Events before this version stop reading.")
    ],
    expected_version: ExpectedOption = None,
    dry_run: DryRunOption = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Truncate a stream: its events before a version no longer read (take a snapshot at or
    after it first). They leave the table at the next `eventfold scavenge`."""

    async def work(settings: Settings) -> tuple[int, AppendResult | None]:
        async with settings.connect() as store:
            version = await _existing(store, stream_id)
            if dry_run:
                return version, None
            return version, await store.truncate_stream(
                stream_id, before, expected_version=expected_version
            )

    version, result = run(ctx, work, database=database)
    if as_json:
        print_json_lines(
            [
                {
                    "stream_id": stream_id,
                    "dry_run": dry_run,
                    "before": before,
                    "version": version,
                    "truncated_at": None if result is None else result.version,
                }
            ]
        )
        return
    if result is None:
        line = f"would truncate stream {stream_id!r} (at version {version}) before {before}"
    else:
        line = (
            f"truncated stream {stream_id!r} before version {before}: StreamTruncated is "
            f"its version {result.version}; `eventfold scavenge` removes the events"
        )
    stdout_console().print(escape(line))


async def _existing(store: EventStore, stream_id: str) -> int:
    """The stream's version; ``StreamNotFound`` for a stream never written (a typo must
    not leave a deletion behind)."""
    version = await store.stream_version(stream_id)
    if version == 0:
        raise StreamNotFound(stream_id, store.url)
    return version


def scavenge_command(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the events of deleted streams and truncated beginnings from the store, in
    short transactions, with progress (the StreamDeleted and StreamTruncated events stay)."""

    async def work(settings: Settings) -> Scavenge:
        async with settings.connect() as store:
            with _shown(as_json or dry_run) as on_progress:
                return await store.scavenge(dry_run=dry_run, on_progress=on_progress)

    result = run(ctx, work, database=database)
    if as_json:
        print_json_lines(
            [
                {
                    "dry_run": result.dry_run,
                    "events": result.events,
                    "streams": result.streams,
                }
            ]
        )
        return
    verb = "would remove" if dry_run else "removed"
    console = stdout_console()
    console.print(escape(f"{verb} {result.events} events of {len(result.streams)} streams"))
    for stream_id, count in result.streams.items():
        console.print(escape(f"  {stream_id}: {count}"))


class _Bar:
    """Draws ``ScavengeProgress`` reports on stderr: events removed, rate and time left."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.progress = Progress(
            TextColumn("[bold]scavenging"),
            BarColumn(),
            TextColumn("{task.fields[events]} events"),
            TextColumn("{task.fields[rate]} ev/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=stderr_console(),
            auto_refresh=False,
        )
        self.task: TaskID = self.progress.add_task("scavenging", events=0, rate="-", eta="?")
        self.drawn = False

    def __call__(self, report: ScavengeProgress) -> None:
        if not self.drawn:
            self.drawn = True
            self.progress.start()
        elapsed = time.monotonic() - self.started
        share = min(report.removed / report.total, 1.0) if report.total else None
        eta = "?" if not share or elapsed <= 0 else duration(elapsed * (1 - share) / share)
        self.progress.update(
            self.task,
            total=report.total,
            completed=report.removed,
            events=f"{report.removed:,}",
            rate=f"{report.removed / elapsed:,.0f}" if elapsed > 0 else "-",
            eta=eta,
        )
        self.progress.refresh()


@contextlib.contextmanager
def _shown(quiet: bool) -> Iterator[OnScavengeProgress | None]:
    """A progress bar while the block runs (none under ``--json`` or a dry run)."""
    if quiet:
        yield None
        return
    bar = _Bar()
    try:
        yield bar
    finally:
        if bar.drawn:
            bar.progress.stop()
