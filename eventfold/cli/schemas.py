"""``eventfold schemas lock`` and ``schemas check``: keep stored events readable across changes.

``lock`` writes the registered JSON Schemas to a file the project commits; ``check`` (in CI)
compares today's classes with it and fails on a change that events already stored would not
survive without a version bump and an upcaster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from eventfold.cli.execution import EXIT_INCOMPATIBLE, run
from eventfold.cli.options import AppOption, DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stdout_console
from eventfold.config import Settings
from eventfold.upcasters import Incompatibility, check_schemas, read_lock, write_lock

DEFAULT_LOCK_FILE = Path("eventfold.schemas.json")
"""Where the lock lives unless ``--file`` says otherwise: the project's root, committed."""

app = typer.Typer(
    help="Lock the registered event schemas, and check changes against the lock (in CI).",
    no_args_is_help=True,
)

FileOption = Annotated[
    Path,
    typer.Option("--file", "-f", help="The lock file.", dir_okay=False),
]


@app.command("lock")
def lock(
    ctx: typer.Context,
    file: FileOption = DEFAULT_LOCK_FILE,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Write every registered event type's version and JSON Schema to the lock file."""

    async def work(settings: Settings) -> dict[str, Any]:
        app = settings.app("`eventfold schemas lock`")
        return write_lock(app.registry, file)

    locked = run(ctx, work, app=app_spec, database=database)
    count = len(locked["events"])
    stdout_console().print(
        f"locked {count} event type{'s' if count != 1 else ''} in {escape(str(file))}: "
        "commit it, and run `eventfold schemas check` in CI"
    )


@app.command("check")
def check(
    ctx: typer.Context,
    file: FileOption = DEFAULT_LOCK_FILE,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fail (exit 8) on a schema change stored events would not survive; one line each."""

    async def work(settings: Settings) -> tuple[int, list[Incompatibility]]:
        app = settings.app("`eventfold schemas check`")
        locked = read_lock(file)
        return len(locked["events"]), check_schemas(app.registry, app.upcasters, locked)

    count, found = run(ctx, work, app=app_spec, database=database)
    if as_json:
        print_json_lines({
            "event_type": item.event_type, "version": item.version, "field": item.field,
            "change": item.change, "remedy": item.remedy,
        } for item in found)
    elif found:
        console = stdout_console()
        for item in found:
            console.print(escape(str(item)))
    else:
        stdout_console().print(
            f"the schemas are compatible with {escape(str(file))} ({count} locked event "
            f"type{'s' if count != 1 else ''})"
        )
    if found:
        raise typer.Exit(EXIT_INCOMPATIBLE)
