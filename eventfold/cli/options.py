"""Options several commands share, declared once so they read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        "-a",
        help="The application as module:attribute (e.g. examples.shop:app); wins over the "
        "--app given before the command and over EVENTFOLD_APP.",
        show_default=False,
    ),
]
"""``--app`` after the command name: ``eventfold run --app shop:app``."""

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        help="The event store: postgresql://..., sqlite:///file.db or memory://; wins over "
        "the --database given before the command and over EVENTFOLD_DATABASE_URL.",
        show_default=False,
    ),
]
"""``--database`` after the command name: ``eventfold migrate --database URL``, as hints
print it."""

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")
]
"""``--json``: machine-readable output, nothing else on stdout."""
