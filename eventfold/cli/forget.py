"""``eventfold forget SUBJECT``: destroy a data subject's key (crypto-shredding)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from eventfold.app import App
from eventfold.cli.execution import run
from eventfold.cli.options import DatabaseOption, JsonOption
from eventfold.cli.render import print_json_lines, stdout_console
from eventfold.config import Settings
from eventfold.eventstore import Forgetting


def forget_command(
    ctx: typer.Context,
    subject: Annotated[
        str, typer.Argument(help="The data subject's id, as its events' subject field holds it.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be destroyed; destroy nothing.")
    ] = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Forget a data subject: destroy its key, so its personal data reads as a placeholder
    everywhere, and delete the snapshots that held it (docs/personal-data.md)."""

    async def work(settings: Settings) -> Forgetting:
        # The subject's key and its streams need no application classes.
        async with App().connect(settings.database_url) as running:
            return await running.forget(subject, dry_run=dry_run)

    forgetting = run(ctx, work, database=database)
    if as_json:
        print_json_lines([{
            "subject": forgetting.subject,
            "dry_run": dry_run,
            "already_forgotten": forgetting.already_forgotten,
            "events": forgetting.events,
            "streams": forgetting.streams,
            "snapshotted_streams": forgetting.snapshotted_streams,
        }])
        return
    stdout_console().print(escape(_sentence(forgetting, dry_run)))


def _sentence(forgetting: Forgetting, dry_run: bool) -> str:
    subject = repr(forgetting.subject)
    if forgetting.already_forgotten:
        done = "would delete" if dry_run else "deleted"
        return (
            f"subject {subject} is forgotten already; {done} the snapshots of "
            f"{forgetting.snapshotted_streams} of its streams"
        )
    held = (
        f"its personal data in {forgetting.events} events of {len(forgetting.streams)} "
        f"streams, and the snapshots of {forgetting.snapshotted_streams} of them"
    )
    if dry_run:
        return f"would destroy the key of subject {subject}: {held}"
    return (
        f"forgot subject {subject}: destroyed {held}; rebuild read models that copied "
        "personal fields"
    )
