"""What every request of the console shares: its sources, its templates, its action token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from eventfold.ui.formatting import FILTERS
from eventfold.ui.sources import Sources

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


def templates() -> Jinja2Templates:
    """The console's page templates (autoescaped), with its filters."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    """The console's state: what it reads from, its pages, its action token."""

    sources: Sources
    token: str | None
    """The token actions need; None when the console is read-only (no ``--allow-actions``)."""
    pages: Jinja2Templates

    @property
    def read_only(self) -> bool:
        """Whether actions (retrying, skipping parked events) are refused."""
        return self.token is None


def context_of(request: Request) -> ConsoleContext:
    """The console's state, from the request's application."""
    found: ConsoleContext = request.app.state.console
    return found


def render(
    request: Request, template: str, status_code: int = 200, **values: Any
) -> Response:
    """A page: ``template`` with ``values`` and what every page shows (store, mode)."""
    console = context_of(request)
    return console.pages.TemplateResponse(
        request, template,
        {
            "store_url": console.sources.store.url,
            "read_only": console.read_only,
            "has_app": console.sources.running is not None,
            **values,
        },
        status_code=status_code,
    )
