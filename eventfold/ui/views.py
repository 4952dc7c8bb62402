"""The console's read-only pages: streams, a stream, an event, a trace, projections,
holders, parked events and the live tail's page."""

from __future__ import annotations

import uuid

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from eventfold.errors import EventNotFound, StreamNotFound
from eventfold.eventstore import START
from eventfold.eventstore.cloudevents import to_cloudevent
from eventfold.projections import ParkedEvent, list_parked
from eventfold.projections.database import Database
from eventfold.projections.leases import lease_info
from eventfold.projections.rebuild import shadow_name
from eventfold.projections.trace import TraceNotFound, trace
from eventfold.status import status_report
from eventfold.ui.context import context_of, render
from eventfold.ui.search import find_streams

STREAMS_PER_PAGE = 50
"""Streams a page shows unless ``?limit=`` says otherwise (at most ``MAX_PER_PAGE``)."""
EVENTS_PER_PAGE = 100
MAX_PER_PAGE = 500


def _int(
    request: Request, name: str, default: int | None = None, maximum: int | None = None
) -> int:
    """A positive whole-number query parameter (400 when it is not one, or too big)."""
    text = request.query_params.get(name, "").strip()
    if not text and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number, not {text!r}") from None
    if value < 1 or (maximum is not None and value > maximum):
        bounds = "at least 1" if maximum is None else f"from 1 to {maximum}"
        raise HTTPException(400, f"{name} must be {bounds}, not {value}")
    return value


def _text(request: Request, name: str) -> str:
    return request.query_params.get(name, "").strip()


async def home(request: Request) -> Response:
    """The streams are where an operator starts."""
    return RedirectResponse(request.url_for("streams"), status_code=303)


async def streams(request: Request) -> Response:
    """Streams in id order, searched by id prefix and category, a page at a time."""
    store = context_of(request).sources.store
    prefix, category = _text(request, "prefix"), _text(request, "category")
    after = request.query_params.get("after") or None
    limit = _int(request, "limit", default=STREAMS_PER_PAGE, maximum=MAX_PER_PAGE)
    page = await find_streams(
        store, prefix=prefix, category=category or None, after=after, limit=limit
    )
    # What the pager's links keep: the search, and a page size other than the default.
    search = {"prefix": prefix, "category": category}
    if limit != STREAMS_PER_PAGE:
        search["limit"] = str(limit)
    return render(
        request, "streams.html", view="streams", page=page, prefix=prefix,
        category=category, after=after, search=search,
    )


async def stream(request: Request) -> Response:
    """One stream's events, oldest first, a page at a time."""
    store = context_of(request).sources.store
    stream_id = _text(request, "id")
    if not stream_id:
        raise HTTPException(400, "name the stream: /stream?id=Order-123")
    start = _int(request, "from", default=1)
    records = await store.read_stream(stream_id, from_version=start, limit=EVENTS_PER_PAGE)
    version = await store.stream_version(stream_id)
    if version == 0:
        raise StreamNotFound(stream_id, store.url)
    return render(
        request, "stream.html", view="streams", stream_id=stream_id, records=records,
        version=version, start=start, per_page=EVENTS_PER_PAGE,
    )


async def event(request: Request) -> Response:
    """One event: its envelope, data and metadata, and its CloudEvent form."""
    store = context_of(request).sources.store
    stream_id = _text(request, "stream")
    if not stream_id:
        raise HTTPException(400, "name the event: /event?stream=Order-123&version=1")
    version = _int(request, "version")
    found = await store.read_stream(stream_id, from_version=version, to_version=version)
    if not found:
        current = await store.stream_version(stream_id)
        if current == 0:
            raise StreamNotFound(stream_id, store.url)
        raise EventNotFound(stream_id, version, current)
    record = found[0]
    return render(
        request, "event.html", view="streams", record=record,
        cloudevent=to_cloudevent(record),
    )


async def trace_view(request: Request) -> Response:
    """The causation tree of an event id or a correlation id (a form when none is given)."""
    sources = context_of(request).sources
    wanted = _text(request, "id")
    roots, problem = [], None
    if wanted:
        try:
            roots = await trace(sources.store, wanted)
        except TraceNotFound as missing:
            problem = str(missing)
    selected = _uuid(wanted)
    return render(
        request, "trace.html", status_code=404 if problem else 200, view="trace",
        wanted=wanted, roots=roots, problem=problem, selected=selected,
    )


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def projections(request: Request) -> Response:
    """Each subscriber's state, holder, checkpoint, lag and parked events, a live lag chart,
    and on PostgreSQL the sessions that hold every reader of the log back."""
    running = context_of(request).sources.application("projections")
    report = await status_report(running)
    return render(request, "projections.html", view="projections", report=report)


async def holders(request: Request) -> Response:
    """The leases: which runner holds each subscriber (and each rebuild), until when."""
    running = context_of(request).sources.application("holders")
    names = [subscriber.name for subscriber in running.app.all_subscribers()]
    found = await lease_info(Database(running.engine), names + [shadow_name(n) for n in names])
    leases = sorted(found.values(), key=lambda lease: lease.name)
    unheld = [name for name in names if name not in found or not found[name].active]
    return render(request, "holders.html", view="holders", leases=leases, unheld=unheld)


async def parked(request: Request) -> Response:
    """Parked events by subscriber, with their errors; retry and skip when allowed."""
    running = context_of(request).sources.application("parked events")
    by_subscriber: dict[str, list[ParkedEvent]] = {}
    for row in await list_parked(running.engine):  # in log order: each list keeps it
        by_subscriber.setdefault(row.subscriber, []).append(row)
    return render(
        request, "parked.html", view="parked", by_subscriber=by_subscriber,
        notice=request.query_params.get("notice"), failed=request.query_params.get("failed"),
    )


async def tail_page(request: Request) -> Response:
    """The live tail's page; its script follows ``/tail/events`` after the head as the page
    was made (after the start of the log with ``?from_start=1``)."""
    store = context_of(request).sources.store
    from_start = request.query_params.get("from_start") == "1"
    after = START if from_start else await store.head()
    return render(request, "tail.html", view="tail", after=after, from_start=from_start)
