"""``eventfold ui``: serve the web console (the extra ``eventfold[ui]``) until Ctrl-C.

Prints, one line each and flushed, the console's URL and whether it is read-only; with
``--allow-actions``, the token its actions need. Nothing else goes to stdout, so a parent
process can read them.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from eventfold.cli.execution import run
from eventfold.cli.options import AppOption
from eventfold.config import Settings
from eventfold.errors import ConsoleUnavailable

_EXTRA = ("starlette", "jinja2", "uvicorn")
"""The packages of the ``ui`` extra."""


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ui_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (keep 127.0.0.1 unless "
                          "a proxy with authentication stands in front).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port (0: any free port).")
    ] = 8765,
    allow_actions: Annotated[
        bool,
        typer.Option("--allow-actions",
                     help="Allow retrying and skipping parked events, with a token printed "
                     "at start (read-only without it)."),
    ] = False,
    app_spec: AppOption = None,
) -> None:
    """Serve the web console: streams, events, traces, projections, leases, parked events,
    the live log."""

    async def work(settings: Settings) -> None:
        try:
            from eventfold.ui import new_token, serve
        except ModuleNotFoundError as missing:
            package = (missing.name or "").split(".")[0]
            if package not in _EXTRA:
                raise
            raise ConsoleUnavailable(
                f"it needs the package {package!r}, which is not installed: "
                "pip install 'eventfold[ui]'"
            ) from missing
        token = new_token() if allow_actions else None

        def started(url: str) -> None:
            mode = "actions allowed with the token below" if token else "read-only"
            _say(f"console on {url} ({mode}; Ctrl-C stops)")
            if token:
                _say(f"action token: {token}")

        await serve(settings, host=host, port=port, token=token, on_started=started)

    run(ctx, work, app=app_spec, interrupt_is_success=True)
