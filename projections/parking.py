"""The parked-events table: events a subscriber could not process, kept with their error.

An event that still fails after its retries is parked (``blocked_by`` is None). A later
event of the same stream is parked behind it (``blocked_by`` is the failed event's
position) without being tried: per-stream order is kept, other streams flow on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore.records import GlobalPosition, RecordedEvent
from eventfold.eventstore.schema import parked_events


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    """An event parked for one subscriber."""

    subscriber: str
    position: GlobalPosition
    event_id: uuid.UUID
    stream_id: str
    event_type: str
    error: str
    traceback: str
    attempts: int
    parked_at: datetime
    blocked_by: GlobalPosition | None
    """The failed event of the same stream this one waits behind; None if it failed itself."""


async def park(
    conn: AsyncConnection,
    subscriber: str,
    record: RecordedEvent,
    *,
    error: str,
    traceback: str,
    attempts: int,
    blocked_by: GlobalPosition | None,
) -> None:
    """Record a parked event in the batch's transaction."""
    await conn.execute(
        parked_events.insert().values(
            subscriber=subscriber,
            transaction_id=record.transaction_id,
            position=record.position,
            event_id=record.event_id,
            stream_id=record.stream_id,
            event_type=record.event_type,
            error=error,
            traceback=traceback,
            attempts=attempts,
            blocked_by_transaction_id=None if blocked_by is None else blocked_by.transaction_id,
            blocked_by_position=None if blocked_by is None else blocked_by.position,
        )
    )


async def blocked_streams(conn: AsyncConnection, subscriber: str) -> dict[str, GlobalPosition]:
    """Streams with parked events for the subscriber, with their first parked position."""
    rows = (await conn.execute(
        sa.select(
            parked_events.c.stream_id,
            parked_events.c.transaction_id,
            parked_events.c.position,
        )
        .where(parked_events.c.subscriber == subscriber)
        .order_by(parked_events.c.transaction_id, parked_events.c.position)
    )).all()
    blocked: dict[str, GlobalPosition] = {}
    for stream_id, transaction_id, position in rows:
        blocked.setdefault(stream_id, GlobalPosition(int(transaction_id), int(position)))
    return blocked


async def select(
    conn: AsyncConnection,
    subscriber: str | None = None,
    *,
    stream_id: str | None = None,
    event_id: uuid.UUID | None = None,
) -> list[ParkedEvent]:
    """Parked events in subscriber and log order, optionally of one subscriber or stream."""
    query = sa.select(parked_events).order_by(
        parked_events.c.subscriber, parked_events.c.transaction_id, parked_events.c.position,
        parked_events.c.id,
    )
    if subscriber is not None:
        query = query.where(parked_events.c.subscriber == subscriber)
    if stream_id is not None:
        query = query.where(parked_events.c.stream_id == stream_id)
    if event_id is not None:
        query = query.where(parked_events.c.event_id == event_id)
    rows = (await conn.execute(query)).mappings().all()
    return [
        ParkedEvent(
            subscriber=row["subscriber"],
            position=GlobalPosition(int(row["transaction_id"]), int(row["position"])),
            event_id=row["event_id"],
            stream_id=row["stream_id"],
            event_type=row["event_type"],
            error=row["error"],
            traceback=row["traceback"],
            attempts=int(row["attempts"]),
            parked_at=row["parked_at"],
            blocked_by=None if row["blocked_by_position"] is None else GlobalPosition(
                int(row["blocked_by_transaction_id"]), int(row["blocked_by_position"])
            ),
        )
        for row in rows
    ]


def _where(parked: ParkedEvent) -> sa.ColumnElement[bool]:
    return sa.and_(
        parked_events.c.subscriber == parked.subscriber,
        parked_events.c.transaction_id == parked.position.transaction_id,
        parked_events.c.position == parked.position.position,
        parked_events.c.event_type == parked.event_type,
    )


async def remove(conn: AsyncConnection, parked: ParkedEvent) -> None:
    """Delete one parked event (applied by a retry, or skipped)."""
    await conn.execute(parked_events.delete().where(_where(parked)))


async def mark_failed(
    conn: AsyncConnection, parked: ParkedEvent, *, error: str, traceback: str
) -> None:
    """A retried event failed again: it is now its stream's head failure."""
    await conn.execute(
        parked_events.update().where(_where(parked)).values(
            error=error, traceback=traceback, attempts=parked.attempts + 1,
            blocked_by_transaction_id=None, blocked_by_position=None,
        )
    )


async def block_behind(
    conn: AsyncConnection, subscriber: str, stream_id: str, blocker: GlobalPosition
) -> None:
    """Point the stream's other parked events at its (new) head failure."""
    await conn.execute(
        parked_events.update()
        .where(
            parked_events.c.subscriber == subscriber,
            parked_events.c.stream_id == stream_id,
            sa.tuple_(parked_events.c.transaction_id, parked_events.c.position)
            > sa.tuple_(sa.literal(blocker.transaction_id), sa.literal(blocker.position)),
        )
        .values(
            blocked_by_transaction_id=blocker.transaction_id,
            blocked_by_position=blocker.position,
            error=f"waiting behind the parked event at {tuple(blocker)} of its stream",
        )
    )


async def count(conn: AsyncConnection, subscribers: list[str]) -> dict[str, int]:
    """How many events are parked per subscriber."""
    rows = (await conn.execute(
        sa.select(parked_events.c.subscriber, sa.func.count())
        .where(parked_events.c.subscriber.in_(subscribers))
        .group_by(parked_events.c.subscriber)
    )).all()
    return {row[0]: int(row[1]) for row in rows}


async def move(conn: AsyncConnection, source: str, target: str) -> None:
    """Replace ``target``'s parked events with ``source``'s (a rebuild's swap)."""
    await conn.execute(parked_events.delete().where(parked_events.c.subscriber == target))
    await conn.execute(
        parked_events.update()
        .where(parked_events.c.subscriber == source)
        .values(subscriber=target)
    )


async def clear(conn: AsyncConnection, subscriber: str) -> None:
    """Forget every parked event of a subscriber (reset, abandoned rebuild)."""
    await conn.execute(parked_events.delete().where(parked_events.c.subscriber == subscriber))
