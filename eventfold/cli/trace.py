"""``eventfold events trace ID``: the tree of events caused by one event, or of a correlation."""

from __future__ import annotations

from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption
from eventfold.cli.render import envelope, print_json_lines, stdout_console
from eventfold.config import Settings
from eventfold.projections.trace import render, trace


def trace_command(
    ctx: typer.Context,
    id: Annotated[str, typer.Argument(help="An event id, or a correlation id.")],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON Lines: each envelope with its depth and parent."),
    ] = False,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Show the events one event caused (transitively), or all events of a correlation id."""

    async def work(settings: Settings) -> None:
        async with settings.connect() as store:
            roots = await trace(store, id)
        if as_json:
            print_json_lines(
                {**envelope(record), "depth": depth}
                for root in roots for depth, record in root.walk()
            )
            return
        stdout_console().print(render(roots))

    run(ctx, work, app=app_spec, database=database)
