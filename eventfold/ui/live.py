"""What the console's pages follow live: projection lag (polled) and the global log
(server-sent events).

The tail is ``eventfold.tail.tail`` as a server-sent event stream: each event's ``id`` is its
global position, so a browser that reconnects (``Last-Event-ID``) resumes exactly after the
last event it showed. It waits through ``store.wait_for_events`` (LISTEN/NOTIFY on
PostgreSQL, polling elsewhere), never inside a transaction. An idle stream sends a comment
every ``KEEP_ALIVE_SECONDS``, so a browser that went away is noticed and its tail ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from eventfold.eventstore import EventStore, GlobalPosition, RecordedEvent
from eventfold.projections import status
from eventfold.tail import tail
from eventfold.ui.context import context_of
from eventfold.ui.formatting import compact, parse_position, position, when

KEEP_ALIVE_SECONDS = 15.0
"""An idle tail sends a comment this often: sending is how the server learns that the
browser went away (and ends the tail), and it keeps proxies from closing a quiet stream."""
FOLLOW_AHEAD = 1000
"""Events the tail reads ahead of what the browser has been sent."""


async def lag(request: Request) -> Response:
    """Each subscriber's lag now, as JSON: what the projections page's chart plots."""
    running = context_of(request).sources.application("projections")
    found = await status(running.store, running.engine, running.app.all_subscribers())
    return JSONResponse({
        "at": datetime.now(UTC).isoformat(),
        "projections": [
            {
                "name": entry.name,
                "state": entry.state,
                "holder": entry.holder,
                "position": entry.checkpoint.position,
                "events_behind": entry.events_behind,
                "events_behind_exact": entry.events_behind_exact,
                "seconds_behind": round(entry.seconds_behind, 3),
                "rate": round(entry.rate, 3),
                "parked": entry.parked,
            }
            for entry in found
        ],
    })


def tail_item(record: RecordedEvent) -> dict[str, object]:
    """What the tail page shows of an event (and links to)."""
    return {
        "position": record.position,
        "stream_id": record.stream_id,
        "stream_version": record.stream_version,
        "event_type": record.event_type,
        "schema_version": record.schema_version,
        "recorded_at": when(record.recorded_at),
        "data": compact(record.data),
    }


async def tail_messages(
    store: EventStore, after: GlobalPosition, *, keep_alive: float = KEEP_ALIVE_SECONDS
) -> AsyncIterator[str]:
    """The server-sent events of the global log after ``after``, live, one per event, and
    a comment after each ``keep_alive`` seconds without one."""
    arrived: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=FOLLOW_AHEAD)

    async def follow() -> None:
        async for record in tail(store, after=after):
            await arrived.put(record)

    follower = asyncio.create_task(follow())
    try:
        while True:
            try:
                record = await asyncio.wait_for(arrived.get(), keep_alive)
            except TimeoutError:
                if follower.done():
                    follower.result()  # the tail failed: end the stream with its error
                yield ": keep-alive\n\n"
                continue
            payload = json.dumps(tail_item(record), ensure_ascii=False)
            yield f"id: {position(record.global_position)}\ndata: {payload}\n\n"
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def tail_events(request: Request) -> Response:
    """The global log after ``Last-Event-ID`` (a reconnecting browser) or ``?after=``."""
    store = context_of(request).sources.store
    text = request.headers.get("last-event-id") or request.query_params.get("after", "")
    try:
        after = parse_position(text)
    except ValueError:
        raise HTTPException(
            400, f"follow the log after a position: ?after=transaction_id.position, not {text!r}"
        ) from None
    return StreamingResponse(
        tail_messages(store, after), media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )
