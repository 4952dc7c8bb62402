"""The console as an ASGI application: its routes, its start and stop, its error pages."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from eventfold.errors import AppRequired
from eventfold.eventstore import EventfoldError, InvalidRead
from eventfold.ui import actions, live, views
from eventfold.ui.context import STATIC, ConsoleContext, render, templates
from eventfold.ui.sources import Sources


def create_console(sources: Sources, *, token: str | None = None) -> Starlette:
    """The web console on open ``sources`` (``eventfold.ui.sources.open_sources``), which
    stay the caller's to close.

    Read-only when ``token`` is None; otherwise retrying and skipping parked events need
    that token (see ``eventfold.ui.actions``).
    """
    app = Starlette(
        routes=[
            Route("/", views.home, name="home"),
            Route("/streams", views.streams, name="streams"),
            Route("/stream", views.stream, name="stream"),
            Route("/event", views.event, name="event"),
            Route("/trace", views.trace_view, name="trace"),
            Route("/projections", views.projections, name="projections"),
            Route("/projections/lag", live.lag, name="lag"),
            Route("/holders", views.holders, name="holders"),
            Route("/parked", views.parked, name="parked"),
            Route("/parked/{name}/retry", actions.retry, methods=["POST"], name="retry"),
            Route(
                "/parked/{name}/skip/{event_id}", actions.skip, methods=["POST"], name="skip"
            ),
            Route("/tail", views.tail_page, name="tail"),
            Route("/tail/events", live.tail_events, name="tail_events"),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={HTTPException: _http_error, EventfoldError: _eventfold_error},
    )
    app.state.console = ConsoleContext(sources, token, templates())
    return app


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if request.url.path.startswith("/static/"):
        return PlainTextResponse(error.detail, status_code=error.status_code)
    return render(
        request, "error.html", status_code=error.status_code, view=None, message=error.detail
    )


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (LookupError, 404),  # no such stream, event, projection or parked event
    (InvalidRead, 400),  # not a stream id (too long, say)
    (AppRequired, 409),  # a view that needs the application the console was not given
)


async def _eventfold_error(request: Request, error: Exception) -> Response:
    """An error the library raised on purpose, on a page: its message says what to do."""
    code = next((code for kind, code in _STATUS if isinstance(error, kind)), 500)
    return render(request, "error.html", status_code=code, view=None, message=str(error))
