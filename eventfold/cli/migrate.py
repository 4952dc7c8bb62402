"""``eventfold migrate``: bring the store's schema to the revision the code expects."""

from __future__ import annotations

from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import DatabaseOption
from eventfold.cli.render import stdout_console
from eventfold.config import Settings
from eventfold.eventstore import masked
from eventfold.eventstore.migrate import SCHEMA_HEAD, migrate, schema_revision


def migrate_command(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Option("--revision", help="The Alembic revision to migrate to.")
    ] = "head",
    database: DatabaseOption = None,
) -> None:
    """Create or upgrade the event store's tables, and the read models' own database's
    when they live apart (--read-models); safe to run again."""

    async def work(settings: Settings) -> None:
        urls = [settings.database_url]
        read_models = settings.read_models()
        if read_models is not None and read_models not in urls:
            urls.append(read_models)
        for url in urls:
            await migrate_one(url)

    async def migrate_one(url: str) -> None:
        before = await schema_revision(url)
        await migrate(url, revision)
        after = await schema_revision(url)
        console = stdout_console()
        if before == after:
            console.print(f"{masked(url)} is already at revision {after}")
        else:
            console.print(
                f"migrated {masked(url)} from revision {before or '(empty)'} to {after}"
                + (" (head)" if after == SCHEMA_HEAD else "")
            )

    run(ctx, work, database=database)
