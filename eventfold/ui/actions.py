"""The console's actions: retrying and skipping parked events, behind a token.

A console started without ``--allow-actions`` refuses every action (403). With it, an
action needs the token ``eventfold ui`` printed when it started, in the form field
``token`` (the parked page asks for it) or the header ``X-Eventfold-Token`` (for scripts);
anything else gets 403. A page from another site cannot know the token, so it cannot make
a browser act on the operator's behalf.
"""

from __future__ import annotations

import secrets
import uuid
from urllib.parse import parse_qs, urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from eventfold.projections import retry_parked, skip_parked
from eventfold.ui.context import context_of

TOKEN_HEADER = "X-Eventfold-Token"
"""The header a script passes the action token in."""


async def _authorise(request: Request) -> None:
    """Refuse the action (403) unless actions are allowed and the token is the right one."""
    expected = context_of(request).token
    if expected is None:
        raise HTTPException(
            403, "this console is read-only: start it with `eventfold ui --allow-actions` to "
            "retry or skip parked events",
        )
    given = request.headers.get(TOKEN_HEADER) or _form_field(await request.body(), "token")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            403, "wrong or missing token: give the token `eventfold ui` printed when it "
            f"started (form field token or header {TOKEN_HEADER})",
        )


def _form_field(body: bytes, name: str) -> str:
    """A field of a URL-encoded form (the console's forms are; this spares the extra a
    multipart parser)."""
    values = parse_qs(body.decode("utf-8", "replace")).get(name)
    return values[0] if values else ""


def _back(request: Request, notice: str, *, failed: bool = False) -> Response:
    """Back to the parked events (303: a reload does not repeat the action), saying what
    the action did."""
    query = {"notice": notice, **({"failed": "1"} if failed else {})}
    return RedirectResponse(f"{request.url_for('parked')}?{urlencode(query)}", status_code=303)


async def retry(request: Request) -> Response:
    """Apply a subscriber's parked events again, in order."""
    await _authorise(request)
    running = context_of(request).sources.application("parked events")
    name = request.path_params["name"]
    result = await retry_parked(running.store, running.engine, running.app.subscriber(name))
    notice = (
        f"{name}: applied {len(result.applied)} parked events; "
        f"{len(result.still_parked)} still parked"
    )
    failed = next((p for p in result.still_parked if p.blocked_by is None), None)
    if failed is not None:
        notice += f"; {failed.event_type} {failed.event_id} failed again: {failed.error}"
    return _back(request, notice, failed=failed is not None)


async def skip(request: Request) -> Response:
    """Drop one parked event without applying it (logged by the library)."""
    await _authorise(request)
    running = context_of(request).sources.application("parked events")
    name = request.path_params["name"]
    running.app.subscriber(name)  # a typo must not read as "nothing parked"
    try:
        event_id = uuid.UUID(request.path_params["event_id"])
    except ValueError:
        raise HTTPException(400, "the event id is not a UUID") from None
    await skip_parked(running.engine, name, [event_id])
    return _back(
        request, f"{name}: skipped {event_id} without applying it; events parked behind it "
        "stay parked: retry them",
    )
