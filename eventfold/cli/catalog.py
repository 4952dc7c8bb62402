"""``eventfold catalog``: the registered event types, their versions, schemas and upcasters."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption, DatabaseOption
from eventfold.config import Settings
from eventfold.upcasters import catalog_json, catalog_markdown


class CatalogFormat(enum.StrEnum):
    """What ``eventfold catalog`` prints."""

    markdown = "markdown"
    json = "json"


def catalog_command(
    ctx: typer.Context,
    format: Annotated[
        CatalogFormat,
        typer.Option("--format", "-f", help="Markdown for people and docs, JSON for tools."),
    ] = CatalogFormat.markdown,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout.",
                     dir_okay=False, writable=True),
    ] = None,
    app_spec: AppOption = None,
    database: DatabaseOption = None,
) -> None:
    """Print the application's event catalog: types, versions, JSON Schemas, upcaster chains."""

    async def work(settings: Settings) -> str:
        app = settings.app("`eventfold catalog`")
        if format is CatalogFormat.json:
            return catalog_json(app.registry, app.upcasters) + "\n"
        return catalog_markdown(app.registry, app.upcasters)

    text = run(ctx, work, app=app_spec, database=database)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        return
    # Plain text, not rich: markup characters in schemas must come out as they are.
    sys.stdout.write(text)
    sys.stdout.flush()
