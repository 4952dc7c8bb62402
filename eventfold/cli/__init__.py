"""The ``eventfold`` command line: thin commands over the library, rendered with rich.

Each command group is one module; every command hands its async work to
``execution.run``, which owns ``asyncio.run`` and the mapping of errors to exit codes.
"""

from __future__ import annotations

import importlib.metadata
from typing import Annotated

import typer

from eventfold.cli import (
    archive,
    catalog,
    events,
    forget,
    horizon,
    lifecycle,
    migrate,
    projections,
    runner,
    schemas,
    snapshots,
    streams,
    trace,
    transfer,
    ui,
)
from eventfold.config import APP_ENV, DATABASE_URL_ENV, READ_MODELS_URL_ENV, Settings
from eventfold.eventstore import DEFAULT_URL

app = typer.Typer(
    name="eventfold",
    help="Administer an eventfold event store and run an application's projections: migrate, "
    "inspect streams, follow the log, snapshot, check schemas, rebuild read models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one line; --debug shows the traceback
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"eventfold {importlib.metadata.version('eventfold')}")
        raise typer.Exit()


@app.callback()
def configure(
    ctx: typer.Context,
    database: Annotated[
        str,
        typer.Option(
            "--database",
            "-d",
            envvar=DATABASE_URL_ENV,
            help="The event store: postgresql://..., sqlite:///file.db or memory://.",
            show_envvar=True,
        ),
    ] = DEFAULT_URL,
    app_spec: Annotated[
        str | None,
        typer.Option(
            "--app",
            "-a",
            envvar=APP_ENV,
            help="The application as module:attribute (an eventfold App, e.g. "
            "examples.shop:app): its events, upcasters, aggregates and projections.",
            show_envvar=True,
            show_default=False,
        ),
    ] = None,
    read_models: Annotated[
        str | None,
        typer.Option(
            "--read-models",
            envvar=READ_MODELS_URL_ENV,
            help="The read models' own database (postgresql://... or sqlite:///file.db): "
            "their tables, checkpoints, parked events and leases; default: the App's "
            "read_models, else the store's database.",
            show_envvar=True,
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error, not only its line.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print eventfold's version and exit."),
    ] = False,
) -> None:
    """Resolve the settings every command uses."""
    ctx.obj = Settings(
        database_url=database, app_spec=app_spec or None, debug=debug,
        read_models_url=read_models or None,
    )


app.command("migrate")(migrate.migrate_command)
streams.app.command("archive")(archive.archive_command)
streams.app.command("expire")(archive.expire_command)
streams.app.command("delete")(lifecycle.delete_command)
streams.app.command("truncate")(lifecycle.truncate_command)
app.add_typer(streams.app, name="streams")
app.command("scavenge")(lifecycle.scavenge_command)
events.app.command("trace")(trace.trace_command)
app.add_typer(events.app, name="events")
app.command("repair-horizon")(horizon.repair_horizon_command)
app.command("forget")(forget.forget_command)
app.command("copy")(transfer.copy_command)
app.command("export")(transfer.export_command)
app.command("import")(transfer.import_command)
app.add_typer(snapshots.app, name="snapshots")
app.command("catalog")(catalog.catalog_command)
app.add_typer(schemas.app, name="schemas")
app.add_typer(projections.app, name="projections")
app.command("run")(runner.run_command)
app.command("ui")(ui.ui_command)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="eventfold")


__all__ = ["app", "main"]
