"""``eventfold projections``: status, rebuild, reset; list, retry and skip parked events."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from eventfold.cli.execution import EXIT_ERROR, run
from eventfold.cli.options import AppOption, DatabaseOption, JsonOption
from eventfold.cli.render import (
    print_json_lines,
    stderr_console,
    stdout_console,
)
from eventfold.config import Settings
from eventfold.eventstore import GlobalPosition, HorizonHolder
from eventfold.projections import (
    REBUILD_SUFFIX,
    ParkedEvent,
    ProjectionStatus,
    RebuildProgress,
    RetryResult,
    list_parked,
    rebuild,
    repartition,
    reset,
    retry_parked,
    skip_parked,
)
from eventfold.projections.partitions import partitions_of
from eventfold.status import (
    DEFAULT_HORIZON_AGE,
    ConsumerBacklog,
    StatusReport,
    duration,
    status_report,
)

app = typer.Typer(
    help="Inspect, rebuild and reset read models; list, retry and skip parked events.",
    no_args_is_help=True,
)

NameArgument = Annotated[
    str, typer.Argument(help="The projection (or other subscriber) by its registered name.")
]


def _position(position: GlobalPosition) -> dict[str, int]:
    return {"transaction_id": position.transaction_id, "position": position.position}


# --- status -------------------------------------------------------------------------------


def _status_dict(entry: ProjectionStatus) -> dict[str, Any]:
    return {
        "name": entry.name,
        "state": entry.state,
        "holder": entry.holder,
        "checkpoint": _position(entry.checkpoint),
        "events_behind": entry.events_behind,
        "events_behind_exact": entry.events_behind_exact,
        "seconds_behind": round(entry.seconds_behind, 3),
        "rate": round(entry.rate, 3),
        "parked": entry.parked,
        "halted_reason": entry.halted_reason,
        "rebuild_holder": entry.rebuild_holder,
        "updated_at": None if entry.updated_at is None else entry.updated_at.isoformat(),
        "last_error": entry.last_error,
        "state_since": None if entry.state_since is None else entry.state_since.isoformat(),
        "partitions": [_status_dict(part) for part in entry.partitions],
    }


def _holder_dict(holder: HorizonHolder) -> dict[str, Any]:
    return {
        "pid": holder.pid,
        "application_name": holder.application_name,
        "state": holder.state,
        "transaction_age_seconds": round(holder.transaction_age.total_seconds(), 3),
        "query": holder.query,
    }


_STATE_STYLE = {"running": "green", "retrying": "bold yellow", "halted": "bold red",
                "rebuilding": "yellow", "stopped": "dim"}


def _status_table(entries: list[ProjectionStatus]) -> Table:
    table = Table(title="projections", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, caption_justify="left",
                  caption="pos: checkpoint position; behind: events still to process "
                  "(+: at least); lag: age of the oldest of them; ev/s: recent rate")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("holder", overflow="fold", min_width=6)
    table.add_column("pos", justify="right", no_wrap=True)
    table.add_column("behind", justify="right", no_wrap=True)
    table.add_column("lag", justify="right", no_wrap=True)
    table.add_column("ev/s", justify="right", no_wrap=True)
    table.add_column("parked", justify="right", no_wrap=True)
    for entry in entries:
        # A partitioned subscriber: its total, then one row per partition.
        for row, label in [(entry, entry.name)] + [
            (part, "  " + part.name) for part in entry.partitions
        ]:
            state = Text(row.state, style=_STATE_STYLE.get(row.state, ""))
            holder = row.holder or "-"
            if row.rebuild_holder is not None and row is entry:
                holder += f" (rebuild: {row.rebuild_holder})"
            table.add_row(
                escape(label), state, escape(holder), str(row.checkpoint.position),
                f"{row.events_behind}{'' if row.events_behind_exact else '+'}",
                duration(row.seconds_behind), f"{row.rate:.1f}",
                Text(str(row.parked), style="bold red" if row.parked else ""),
            )
    return table


def _consumer_dict(backlog: ConsumerBacklog) -> dict[str, Any]:
    return {
        "name": backlog.name,
        "error": backlog.error,
        "partitions": [
            {"topic": p.topic, "partition": p.partition, "committed": p.committed,
             "end": p.end, "lag": p.lag}
            for p in backlog.partitions
        ],
    }


def _consumers_table(consumers: list[ConsumerBacklog]) -> Table:
    table = Table(title="consumers", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, caption_justify="left",
                  caption="committed: the group's next offset; lag: messages after it")
    table.add_column("name", style="bold", overflow="fold", min_width=6)
    table.add_column("topic", overflow="fold", min_width=6)
    for column in ("partition", "committed", "end", "lag"):
        table.add_column(column, justify="right", no_wrap=True)
    for backlog in consumers:
        for p in backlog.partitions:
            table.add_row(
                escape(backlog.name), escape(p.topic), str(p.partition), str(p.committed),
                str(p.end), Text(str(p.lag), style="bold yellow" if p.lag else ""),
            )
    return table


def _print_horizon(console: Console, holders: list[HorizonHolder]) -> None:
    """One line per session: what to look for in pg_stat_activity, and what to end."""
    console.print(
        "[bold yellow]readers of the log wait for these open transactions[/] (oldest first; "
        "commit, roll back or end them: SELECT pg_terminate_backend(pid)):"
    )
    for holder in holders:
        query = " ".join(holder.query.split())
        console.print(
            f"  pid {holder.pid} application {escape(holder.application_name or '-')!r} "
            f"{escape(holder.state)} for {duration(holder.transaction_age.total_seconds())}"
            + (f": {escape(query[:120])}{'…' if len(query) > 120 else ''}" if query else "")
        )


@app.command("status")
def status_command(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Only these subscribers (default: every one of the application).",
                       show_default=False),
    ] = None,
    horizon_age: Annotated[
        float,
        typer.Option(
            "--horizon-age", min=0,
            help="Name open write transactions older than this many seconds (PostgreSQL).",
        ),
    ] = DEFAULT_HORIZON_AGE.total_seconds(),
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print one JSON object: {"projections": [...], '
                     '"horizon_holders": [...], "consumers": [...]}.'),
    ] = False,
) -> None:
    """Each projection's state, holder, checkpoint, lag, recent rate and parked events."""

    async def work(settings: Settings) -> StatusReport:
        async with settings.connect_app("`eventfold projections status`") as running:
            return await status_report(
                running, names=names or None, horizon_age=timedelta(seconds=horizon_age)
            )

    report = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines([{
            "projections": [_status_dict(entry) for entry in report.projections],
            "horizon_holders": [_holder_dict(holder) for holder in report.horizon_holders],
            "consumers": [_consumer_dict(backlog) for backlog in report.consumers],
        }])
        return
    console = stdout_console()
    if not report.projections:
        console.print("the application has no projections or other subscribers")
    else:
        console.print(_status_table(report.projections))
        for entry in report.projections:
            if entry.halted_reason is not None:
                console.print(
                    f"[bold red]{escape(entry.name)} is halted:[/] {escape(entry.halted_reason)}"
                    f" (`eventfold projections parked {escape(entry.name)}`)"
                )
            elif entry.state == "retrying" and entry.last_error is not None:
                console.print(
                    f"[bold yellow]{escape(entry.name)} is retrying[/] after "
                    f"{escape(entry.last_error)}"
                )
    if any(backlog.partitions for backlog in report.consumers):
        console.print(_consumers_table(report.consumers))
    for backlog in report.consumers:
        if backlog.error is not None:
            console.print(f"[bold yellow]{escape(backlog.name)}:[/] {escape(backlog.error)}")
    if report.horizon_holders:
        _print_horizon(console, report.horizon_holders)


# --- rebuild and reset --------------------------------------------------------------------


class _Bar:
    """Draws ``RebuildProgress`` reports as a rich progress bar on stderr."""

    def __init__(self, name: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]} events"),
            TextColumn("{task.fields[rate]} ev/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=stderr_console(),
            # Redrawn at each report, from the event loop: no refresh thread.
            auto_refresh=False,
        )
        self.task: TaskID = self.progress.add_task(
            f"rebuilding {name}", total=None, done=0, rate="-", eta="?"
        )

    def __call__(self, report: RebuildProgress) -> None:
        self.progress.update(
            self.task,
            description=f"rebuilding {report.name} ({report.phase})",
            total=report.total_estimate,
            completed=report.events_done,
            done=report.events_done,
            rate=f"{report.rate:,.0f}",
            eta="0s" if report.phase == "done" else duration(report.eta_seconds),
        )
        self.progress.refresh()


@app.command("rebuild")
def rebuild_command(
    ctx: typer.Context,
    name: NameArgument,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place",
            help="Empty the tables and replay into them (queries see them fill up) instead "
            "of building shadow tables and swapping them in.",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Events per transaction of the replay.")
    ] = 1000,
    allow_parked: Annotated[
        bool,
        typer.Option(
            "--allow-parked",
            help="Swap the new read model in (or finish in place) even though the replay "
            "parked events; without it such a rebuild fails and keeps the live model.",
        ),
    ] = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="No bar; print the final progress as one JSON object.")
    ] = False,
) -> None:
    """Rebuild a read model from the whole log: blue/green without downtime by default.

    Exits 1 if the replay parked events (the live model stays; the shadow is kept for
    `projections parked NAME#rebuild`), unless --allow-parked."""
    started = time.monotonic()

    async def work(settings: Settings) -> RebuildProgress:
        async with settings.connect_app("`eventfold projections rebuild`") as running:
            projection = running.app.projections.get(name)
            bar = None if as_json else _Bar(name)
            if bar is not None:
                bar.progress.start()
            try:
                return await rebuild(
                    running.store, running.engine, projection, in_place=in_place,
                    on_progress=bar, batch_size=batch_size, allow_parked=allow_parked,
                )
            finally:
                if bar is not None:
                    bar.progress.stop()

    final = run(ctx, work, app=app_spec, database=database)
    elapsed = time.monotonic() - started
    if as_json:
        print_json_lines([{
            "name": final.name, "in_place": in_place, "events": final.events_done,
            "seconds": round(elapsed, 3), "rate": round(final.rate, 3),
            "checkpoint": _position(final.position), "parked": final.parked,
        }])
        return
    how = "in place" if in_place else "blue/green, swapped in"
    stdout_console().print(
        f"rebuilt {escape(name)} ({how}): {final.events_done} events in {duration(elapsed)} "
        f"({final.rate:,.0f} events/s), checkpoint at position {final.position.position}"
        + (f"; {final.parked} events parked (`eventfold projections parked {escape(name)}`)"
           if final.parked else "")
    )


@app.command("reset")
def reset_command(
    ctx: typer.Context, name: NameArgument, app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Empty a read model and put its checkpoint back to the start (its runner replays)."""

    async def work(settings: Settings) -> None:
        async with settings.connect_app("`eventfold projections reset`") as running:
            await reset(running.engine, running.app.projections.get(name))

    run(ctx, work, app=app_spec, database=database)
    stdout_console().print(
        f"reset {escape(name)}: its tables are empty and its checkpoint is at the start of the "
        "log; its runner (`eventfold run`) replays the log into them"
    )


@app.command("repartition")
def repartition_command(
    ctx: typer.Context, name: NameArgument, app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Store a process manager's or relay's checkpoints for the partition count it declares
    now (stop its runners once caught up first)."""

    async def work(settings: Settings) -> tuple[GlobalPosition | None, int]:
        async with settings.connect_app("`eventfold projections repartition`") as running:
            subscriber = running.app.subscriber(name)
            count = len(partitions_of(subscriber)) or 1
            return await repartition(running.store, running.engine, subscriber), count

    position, count = run(ctx, work, app=app_spec, database=database)
    if position is None:
        stdout_console().print(
            f"{escape(name)}: nothing to change (no checkpoints, or stored with {count})"
        )
        return
    stdout_console().print(
        f"repartitioned {escape(name)} into {count} partition(s), going on after position "
        f"{position.position}"
    )


# --- parked events --------------------------------------------------------------------------


def _parked_dict(parked: ParkedEvent) -> dict[str, Any]:
    return {
        "subscriber": parked.subscriber,
        "position": _position(parked.position),
        "event_id": str(parked.event_id),
        "stream_id": parked.stream_id,
        "event_type": parked.event_type,
        "error": parked.error,
        "traceback": parked.traceback,
        "attempts": parked.attempts,
        "parked_at": parked.parked_at.isoformat(),
        "blocked_by": None if parked.blocked_by is None else _position(parked.blocked_by),
    }


def _print_parked(console: Console, rows: list[ParkedEvent]) -> None:
    """Each parked event on one line (the id in full, to copy into ``skip``), its error on
    the next: a table would cut one or the other short."""
    for parked in rows:
        console.print(
            f"[bold]{escape(parked.subscriber)}[/] pos {parked.position.position} "
            f"{escape(parked.stream_id)} {escape(parked.event_type)} {parked.event_id}"
            + (f" [dim]waits behind position {parked.blocked_by.position}[/]"
               if parked.blocked_by is not None
               else f" [dim]after {parked.attempts} attempts[/]")
        )
        if parked.blocked_by is None:
            console.print(f"    [red]{escape(' '.join(parked.error.split()))}[/]")


@app.command("parked")
def parked_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="Only this subscriber's parked events.", show_default=False),
    ] = None,
    stream_id: Annotated[
        str | None, typer.Option("--stream", help="Only events of this stream.")
    ] = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """List parked events (failed ones, and those waiting behind them in their stream)."""

    async def work(settings: Settings) -> list[ParkedEvent]:
        async with settings.connect_app("`eventfold projections parked`") as running:
            if name is not None:
                # A typo must not read as "nothing parked". NAME#rebuild: the events a
                # refused rebuild parked in its kept shadow.
                running.app.subscriber(name.removesuffix(REBUILD_SUFFIX))
            return await list_parked(running.engine, name, stream_id=stream_id)

    rows = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines(_parked_dict(parked) for parked in rows)
        return
    console = stdout_console()
    whose = f" for {escape(name)}" if name else ""
    if not rows:
        console.print(f"no parked events{whose}")
        return
    console.print(f"{len(rows)} parked events{whose}:")
    _print_parked(console, rows)
    console.print(
        "[dim]retry them in order with `eventfold projections retry NAME`, or drop one with "
        "`eventfold projections skip NAME EVENT_ID`; --json shows errors and tracebacks[/]"
    )


@app.command("retry")
def retry_command(
    ctx: typer.Context,
    name: NameArgument,
    stream_id: Annotated[
        str | None, typer.Option("--stream", help="Only the parked events of this stream.")
    ] = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply a subscriber's parked events again, in order; exits 1 if some fail again."""

    async def work(settings: Settings) -> RetryResult:
        async with settings.connect_app("`eventfold projections retry`") as running:
            subscriber = running.app.subscriber(name)
            return await retry_parked(
                running.store, running.engine, subscriber, stream_id=stream_id
            )

    result = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines([{
            "applied": [_parked_dict(parked) for parked in result.applied],
            "still_parked": [_parked_dict(parked) for parked in result.still_parked],
        }])
    else:
        console = stdout_console()
        console.print(
            f"applied {len(result.applied)} parked events of {escape(name)}; "
            f"{len(result.still_parked)} still parked"
        )
        _print_parked(console, result.still_parked)
    if result.still_parked:
        failed = next((p for p in result.still_parked if p.blocked_by is None),
                      result.still_parked[0])
        message = " ".join(
            f"{len(result.still_parked)} events of {name} are still parked; "
            f"{failed.event_type} {failed.event_id} failed again: {failed.error}".split()
        )
        stderr_console().print(f"[bold red]error:[/] {escape(message)}")
        raise typer.Exit(EXIT_ERROR)


@app.command("skip")
def skip_command(
    ctx: typer.Context,
    name: NameArgument,
    event_ids: Annotated[
        list[uuid.UUID], typer.Argument(help="The parked events to drop, by event id.")
    ],
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Drop parked events without applying them (logged; events behind them stay parked)."""

    async def work(settings: Settings) -> None:
        async with settings.connect_app("`eventfold projections skip`") as running:
            running.app.subscriber(name)
            await skip_parked(running.engine, name, event_ids)

    run(ctx, work, app=app_spec, database=database)
    them = "them" if len(event_ids) != 1 else "it"
    stdout_console().print(
        f"skipped {len(event_ids)} parked event{'s' if len(event_ids) != 1 else ''} of "
        f"{escape(name)} without applying {them}; events parked behind {them} stay parked: "
        f"`eventfold projections retry {escape(name)}`"
    )
