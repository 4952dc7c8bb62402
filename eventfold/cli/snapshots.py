"""``eventfold snapshots``: take, sweep and prune the snapshots of the application's aggregates."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from eventfold.cli.execution import EXIT_ERROR, run
from eventfold.cli.options import AppOption, DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stderr_console, stdout_console
from eventfold.config import Settings
from eventfold.snapshots import Snapshot, SweepReport

app = typer.Typer(
    help="Snapshot aggregates' streams so loads fold only the events after them.",
    no_args_is_help=True,
)


def _snapshot(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "stream_id": snapshot.stream_id,
        "version": snapshot.version,
        "state_version": snapshot.state_version,
    }


@app.command("take")
def take(
    ctx: typer.Context,
    stream_id: Annotated[str, typer.Argument(help="The aggregate's stream, e.g. Order-123.")],
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fold one stream and store its snapshot at the stream's head."""

    async def work(settings: Settings) -> Snapshot:
        async with settings.connect_app("`eventfold snapshots take`") as running:
            return await running.take_snapshot(stream_id)

    snapshot = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines([_snapshot(snapshot)])
        return
    stdout_console().print(
        f"took a snapshot of {escape(snapshot.stream_id)} at version {snapshot.version} "
        f"(state version {snapshot.state_version})"
    )


@app.command("sweep")
def sweep(
    ctx: typer.Context,
    threshold: Annotated[
        int,
        typer.Option(
            "--threshold", "-t", min=1,
            help="Snapshot streams with at least this many events since their last snapshot.",
        ),
    ] = 100,
    categories: Annotated[
        list[str] | None,
        typer.Option(
            "--category", "-c",
            help="Only streams of this aggregate category (repeat for several); default: "
            "every aggregate of the application.",
        ),
    ] = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Snapshot every stream whose tail since its last snapshot reached the threshold."""

    async def work(settings: Settings) -> SweepReport:
        async with settings.connect_app("`eventfold snapshots sweep`") as running:
            return await running.sweep_snapshots(
                threshold=threshold, categories=categories or None
            )

    report = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines([{
            "examined": report.examined,
            "taken": [_snapshot(snapshot) for snapshot in report.taken],
            "failed": report.failed,
        }])
    else:
        console = stdout_console()
        console.print(
            f"examined {report.examined} streams, took {len(report.taken)} snapshots"
            + (f", {len(report.failed)} failed" if report.failed else "")
        )
        if report.taken:
            table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
            table.add_column("stream", style="bold")
            table.add_column("version", justify="right")
            table.add_column("state version", justify="right")
            for snapshot in report.taken:
                table.add_row(
                    escape(snapshot.stream_id), str(snapshot.version),
                    str(snapshot.state_version),
                )
            console.print(table)
    if report.failed:
        # Each failure is one line: the sweep went on, but a script must notice.
        stderr = stderr_console()
        for stream_id, reason in report.failed.items():
            stderr.print(f"[bold red]error:[/] {escape(stream_id)}: {escape(reason)}")
        raise typer.Exit(EXIT_ERROR)


@app.command("prune")
def prune(
    ctx: typer.Context,
    keep: Annotated[
        int,
        typer.Option("--keep", "-k", min=1, help="Keep this many newest snapshots per stream."),
    ] = 1,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete old snapshots, and those of state versions the aggregates no longer have."""

    async def work(settings: Settings) -> int:
        async with settings.connect_app("`eventfold snapshots prune`") as running:
            return await running.prune_snapshots(keep=keep)

    deleted = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines([{"deleted": deleted, "keep": keep}])
        return
    stdout_console().print(
        f"deleted {deleted} snapshots (kept the newest {keep} per stream of each aggregate's "
        "current state version)"
    )
