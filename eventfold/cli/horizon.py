"""``eventfold repair-horizon``: renumber stored transaction ids after a logical restore."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventfold.cli.execution import run
from eventfold.cli.options import DatabaseOption
from eventfold.cli.render import stdout_console
from eventfold.config import Settings
from eventfold.eventstore import SchemaNotMigrated, StoreUnavailable, masked
from eventfold.eventstore.horizon import repair_horizon
from eventfold.eventstore.migrate import SCHEMA_HEAD, schema_revision


def repair_horizon_command(ctx: typer.Context, database: DatabaseOption = None) -> None:
    """Renumber stored transaction ids below the server's horizon (PostgreSQL only).

    Run it when eventfold refuses a store restored from a dump (docs/operations.md), with
    no eventfold process writing. On a healthy store it changes nothing.
    """

    async def work(settings: Settings) -> None:
        url = settings.database_url
        console = stdout_console()
        if not _is_postgres(url):
            console.print(
                f"nothing to repair: {masked(url)} is not PostgreSQL, and only PostgreSQL "
                "stores order their log by transaction id"
            )
            return
        # Without the tables the repair would fail on SQL; say what to run instead.
        if await schema_revision(url) is None:
            raise SchemaNotMigrated(masked(url), None, SCHEMA_HEAD)
        repair = await repair_horizon(url)
        if not repair.repaired:
            console.print(
                f"nothing to repair: every stored transaction id of {masked(url)} lies below "
                "the server's horizon"
            )
            return
        console.print(
            f"renumbered {repair.events_renumbered} events of {repair.transactions} "
            f"transactions in {masked(url)} (advanced the server's counter by "
            f"{repair.transaction_ids_consumed}); the log keeps its order. Projections with "
            "checkpoints from before the repair must be rebuilt or reset (docs/operations.md)"
        )

    run(ctx, work, database=database)


def _is_postgres(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() in {"postgresql", "postgres"}
    except ArgumentError:
        if url.split(":", 1)[0].lower() in {"memory", "sqlite"}:
            return False
        raise StoreUnavailable(masked(url), "not a database URL") from None
