"""``eventfold events``: the global log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption
from eventfold.cli.render import envelope, event_line, print_json_lines, stdout_console
from eventfold.config import Settings
from eventfold.eventstore import START
from eventfold.tail import tail

app = typer.Typer(help="Read the global log.", no_args_is_help=True)


@app.command("tail")
def tail_events(
    ctx: typer.Context,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="Begin with the first event, not only new ones."),
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON envelope per line for scripts.")
    ] = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Follow the global log live, printing each event as it is committed (Ctrl-C stops)."""

    async def work(settings: Settings) -> None:
        console = stdout_console()
        async with settings.connect() as store:
            after = START if from_start else await store.head()
            # On stderr, so a script reading --json sees only events, and a reader knows
            # from this line that every event committed from now on will be printed.
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"following {store.url} after position {after.position} (Ctrl-C stops)"
            )
            seen = 0
            async for record in tail(store, after=after):
                if as_json:
                    print_json_lines([envelope(record)])
                else:
                    console.print(event_line(record), soft_wrap=True)
                seen += 1
                if count is not None and seen >= count:
                    return

    run(ctx, work, app=app_spec, database=database, interrupt_is_success=True)
