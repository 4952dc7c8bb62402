"""Listing, retrying and skipping parked events (what ``eventfold projections parked`` calls).

A retry applies a subscriber's parked events again, stream by stream in log order, each
once in a savepoint of one transaction that holds the subscriber's checkpoint row (so it
never interleaves with the holder's batches). An event that succeeds leaves the parked
table; the first that fails again stays with its new error, and the ones behind it stay
parked behind it. When a halted subscriber has nothing parked any more, it goes on.

Like the runner's batches, the retry's transaction is wrapped in the subscriber's
``around_batch`` (a relay publishes there, never with the transaction open), so the parked
events are read before it; those parked while ``around_batch`` ran stay parked for the
next retry.

Skipping drops one parked event without applying it. It is never done silently: it is
logged, and only on request.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import GlobalPosition, RecordedEvent
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.errors import ParkedEventNotFound, ProjectionError
from eventfold.projections.parking import ParkedEvent
from eventfold.projections.partitions import (
    Partition,
    partition_name,
    partitions_of,
    stored_units,
)
from eventfold.projections.subscriber import Delivery, Subscriber
from eventfold.projections.subscription import Failure, Subscription, describe

logger = logging.getLogger("eventfold.projections")


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What a retry did: events applied, and those still parked (with their errors)."""

    applied: list[ParkedEvent]
    still_parked: list[ParkedEvent]


async def list_parked(
    engine: AsyncEngine, name: str | None = None, *, stream_id: str | None = None
) -> list[ParkedEvent]:
    """Parked events, of every subscriber or of one (and optionally one stream)."""
    db = Database(engine)
    async with db.reading() as conn:
        if name is None:
            return await parking.select(conn, None, stream_id=stream_id)
        # A partitioned subscriber's events are parked under its partitions' names.
        names = sorted(await stored_units(conn, name)) or [name]
        return [
            parked for unit in names
            for parked in await parking.select(conn, unit, stream_id=stream_id)
        ]


async def retry_parked(
    store: EventStore,
    engine: AsyncEngine,
    subscriber: Subscriber,
    *,
    stream_id: str | None = None,
) -> RetryResult:
    """Apply the subscriber's parked events again, in order (one stream, or all; of
    each of its partitions in turn when it has partitions)."""
    parts = partitions_of(subscriber)
    if not parts:
        return await _retry_unit(store, engine, subscriber, subscriber.name, None, stream_id)
    applied: list[ParkedEvent] = []
    remaining: list[ParkedEvent] = []
    for part in parts:
        name = partition_name(subscriber.name, part.index)
        result = await _retry_unit(store, engine, subscriber, name, part, stream_id)
        applied += result.applied
        remaining += result.still_parked
    return RetryResult(applied, remaining)


async def _retry_unit(
    store: EventStore,
    engine: AsyncEngine,
    subscriber: Subscriber,
    name: str,
    partition: Partition | None,
    stream_id: str | None,
) -> RetryResult:
    db = Database(engine)
    subscription = Subscription(store, db, subscriber, name=name, partition=partition)
    async with db.reading() as conn:
        ahead = await parking.select(conn, name, stream_id=stream_id)
    records = {parked.event_id: await _fetch(store, parked) for parked in ahead}
    applied: list[ParkedEvent] = []
    async with (
        subscriber.around_batch(list(records.values()), store, engine),
        db.transaction() as conn,
    ):
        await checkpoints.read(db, conn, name, lock=True)
        rows = await parking.select(conn, name, stream_id=stream_id)
        failed_streams: set[str] = set()
        for parked in rows:
            record = records.get(parked.event_id)
            if record is None or parked.stream_id in failed_streams:
                continue
            failure = await _retry_one(store, subscription, conn, parked, record)
            if failure is None:
                await parking.remove(conn, parked)
                applied.append(parked)
                continue
            await parking.mark_failed(
                conn, parked, error=failure.error, traceback=failure.traceback
            )
            await parking.block_behind(conn, name, parked.stream_id, parked.position)
            failed_streams.add(parked.stream_id)
        if not await parking.select(conn, name):
            await checkpoints.clear_halt(conn, name)
        remaining = await parking.select(conn, name, stream_id=stream_id)
    for parked in applied:
        logger.info(
            "%s: parked event %s (%s, stream %r) applied on retry",
            name, parked.event_id, parked.event_type, parked.stream_id,
        )
    return RetryResult(applied, remaining)


async def skip_parked(engine: AsyncEngine, name: str, event_ids: Sequence[uuid.UUID]) -> None:
    """Drop parked events without applying them (the operator decided they must not be).

    Events parked behind a skipped one stay parked: retry them next.
    """
    db = Database(engine)
    async with db.transaction() as conn:
        # A partitioned subscriber's events are parked under its partitions' names.
        units = sorted(await stored_units(conn, name)) or [name]
        for unit in units:
            await checkpoints.read(db, conn, unit, lock=True)
        for event_id in event_ids:
            found = [
                parked for unit in units
                for parked in await parking.select(conn, unit, event_id=event_id)
            ]
            if not found:
                raise ParkedEventNotFound(name, event_id)
            for parked in found:
                await parking.remove(conn, parked)
                logger.warning(
                    "%s: parked event %s (%s, stream %r, position %s) skipped on request; "
                    "its last error: %s",
                    name, parked.event_id, parked.event_type, parked.stream_id,
                    tuple(parked.position), parked.error,
                )
        for unit in units:
            if not await parking.select(conn, unit):
                await checkpoints.clear_halt(conn, unit)


async def _retry_one(
    store: EventStore,
    subscription: Subscription,
    conn: AsyncConnection,
    parked: ParkedEvent,
    record: RecordedEvent,
) -> Failure | None:
    try:
        event = store.registry.decode(record)
    except Exception as exc:
        return Failure(describe(exc), traceback.format_exc(), parked.attempts + 1)
    return await subscription.attempt_once(conn, Delivery(record, event))


async def _fetch(store: EventStore, parked: ParkedEvent) -> RecordedEvent:
    # Nothing lies between (transaction_id, position - 1) and the event itself in log
    # order, so the event is the first record read after that point (with its type).
    after = GlobalPosition(parked.position.transaction_id, parked.position.position - 1)
    records = await store.read_all(after=after, limit=10, event_types=[parked.event_type])
    for record in records:
        if record.global_position == parked.position and record.event_type == parked.event_type:
            return record
    raise ProjectionError(
        f"parked event {parked.event_id} ({parked.event_type} at {tuple(parked.position)}) "
        "is not in the log as that type any more (was its type renamed by an upcaster?): "
        "skip it"
    )
