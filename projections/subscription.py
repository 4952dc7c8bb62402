"""The subscription engine: feeds one subscriber from the global log, batch by batch.

One batch, one transaction. The batch's events are read from the store (outside the
transaction), then in one database transaction:

1. the checkpoint row is locked and compared with where this holder left it (a mismatch
   means another holder, a rebuild's swap or a reset moved it: roll back, reload);
2. the subscriber's ``handle_batch`` runs on the whole batch inside a savepoint - the fast
   path, one savepoint per batch, so bulk writers keep their speed;
3. only if that fails (or the batch has events that cannot go through: undecodable ones,
   or ones of a stream with parked events) the savepoint is rolled back and the batch is
   redone one event at a time, each in its own savepoint: a failing event is retried with
   exponential backoff, then parked (or the subscriber halts, by policy), and the good
   events around it still commit;
4. the checkpoint advances by compare-and-set on its previous value, and everything commits
   together - writes, parked events, checkpoint - or nothing does.

Why savepoints and not smaller transactions: the redo keeps the checkpoint row locked for
the whole batch, so nothing (another holder, a swap) can slip in between the good events
and the checkpoint, and there is exactly one commit per batch whatever fails. A failure
that is not the handler's (the connection is lost) breaks the transaction itself; then the
whole batch rolls back - parked rows included - and is read again later, so an event is
never parked for an outage. A subscriber signals an outage of its own (a broker) the same
way by raising ``SubscriberUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback as traceback_module
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore import instrumentation
from eventfold.eventstore.errors import EventDecodeError, UnknownEventType
from eventfold.eventstore.event import Event
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, GlobalPosition, RecordedEvent
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.errors import CheckpointMoved, ProjectionHalted, SubscriberUnavailable
from eventfold.projections.subscriber import BatchContext, Delivery, Subscriber

logger = logging.getLogger("eventfold.projections")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an event could not be processed."""

    error: str
    traceback: str
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one committed batch did."""

    events: int
    parked: int
    checkpoint: GlobalPosition
    halted_reason: str | None


def describe(exc: BaseException) -> str:
    """One line naming an exception: ``ValueError: bad amount``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Subscription:
    """Processes one subscriber's batches; the runner and rebuilds drive it."""

    def __init__(
        self,
        store: EventStore,
        db: Database,
        subscriber: Subscriber,
        *,
        name: str | None = None,
        replaying: bool = False,
        batch_size: int = 500,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.db = db
        self.subscriber = subscriber
        self.name = name or subscriber.name
        self.replaying = replaying
        self.batch_size = batch_size
        self.sleep = sleep
        self.checkpoint: GlobalPosition = START
        self.caught_up_to: GlobalPosition = START
        self.halted_reason: str | None = None
        self.ready = False
        """Whether ``setup`` ran (the subscriber's tables exist, the checkpoint is loaded)."""
        self.rate = 0.0
        event_types = subscriber.event_types
        self._types = None if event_types is None else sorted(event_types)

    @property
    def done_through(self) -> GlobalPosition:
        """The log position up to which every subscribed event is processed (or parked)."""
        return max(self.checkpoint, self.caught_up_to)

    async def setup(self) -> None:
        """Let the subscriber prepare its tables and load (or create) the checkpoint."""
        async with self.db.transaction() as conn:
            await self.subscriber.prepare(conn)
            await checkpoints.ensure(self.db, conn, self.name)
        await self.reload()
        self.ready = True

    async def reload(self) -> None:
        """Load the stored checkpoint (after another holder, a swap or a reset moved it)."""
        async with self.db.reading() as conn:
            stored = await checkpoints.read(self.db, conn, self.name)
        self.checkpoint = START if stored is None else stored.position
        self.caught_up_to = START
        self.halted_reason = None if stored is None else stored.halted_reason

    async def step(self) -> int:
        """Process the next batch; return how many events were read (0: caught up).

        Raises ``CheckpointMoved`` (nothing committed; ``reload`` and go on) and
        ``ProjectionHalted`` (the subscriber is halted, now or since earlier).
        """
        if self.halted_reason is not None:
            raise ProjectionHalted(self.name, self.halted_reason)
        started = time.monotonic()
        head = await self.store.head()
        records = await self.store.read_all(
            after=self.checkpoint, limit=self.batch_size, event_types=self._types
        )
        if records:
            # A subscriber may wrap its batches (process managers decide ahead on SQLite).
            around = getattr(self.subscriber, "around_batch", None)
            scope: AbstractAsyncContextManager[object] = (
                around(records, self.store, self.db.engine)
                if around is not None and not self.replaying else nullcontext()
            )
            with instrumentation.batch(self.name, records, head):
                async with scope, self.db.transaction() as conn:
                    outcome = await self.apply(conn, records, started=started)
            self.checkpoint = outcome.checkpoint
            if outcome.halted_reason is not None:
                self.halted_reason = outcome.halted_reason
                raise ProjectionHalted(self.name, outcome.halted_reason)
        if len(records) < self.batch_size:
            # Everything of our types up to ``head`` was in this read: we are caught up to
            # it even if the last event of ours lies earlier.
            self.caught_up_to = max(self.caught_up_to, head)
        return len(records)

    async def apply(
        self,
        conn: AsyncConnection,
        records: list[RecordedEvent],
        *,
        started: float | None = None,
    ) -> BatchOutcome:
        """Apply a batch read after ``self.checkpoint`` in the caller's transaction and advance
        the checkpoint there (the caller commits, then sets ``self.checkpoint``)."""
        stored = await checkpoints.read(self.db, conn, self.name, lock=True)
        if stored is None or stored.position != self.checkpoint:
            raise CheckpointMoved(self.name, self.checkpoint, stored and stored.position)
        if stored.halted_reason is not None:
            raise ProjectionHalted(self.name, stored.halted_reason)
        blocked = await parking.blocked_streams(conn, self.name)
        decoded: list[Event | Failure] = [self._decode(record) for record in records]
        context = BatchContext(conn, self.name, self.replaying, self.store)

        if not blocked and not any(isinstance(item, Failure) for item in decoded):
            batch = [
                Delivery(record, event)
                for record, event in zip(records, decoded, strict=True)
                if isinstance(event, Event)
            ]
            try:
                async with conn.begin_nested():
                    await self.subscriber.handle_batch(batch, context)
            except Exception as exc:
                if conn.invalidated or isinstance(exc, SubscriberUnavailable):
                    raise
                logger.info(
                    "%s: a batch of %d failed (%s); redoing it one event at a time",
                    self.name, len(batch), describe(exc),
                )
            else:
                new = records[-1].global_position
                await self._advance(conn, new, len(records), started, None)
                return BatchOutcome(len(records), 0, new, None)

        parked = 0
        halted_reason: str | None = None
        new = self.checkpoint
        for record, item in zip(records, decoded, strict=True):
            new = record.global_position
            blocker = blocked.get(record.stream_id)
            if blocker is not None:
                await parking.park(
                    conn, self.name, record,
                    error=f"waiting behind the parked event at {tuple(blocker)} of its stream",
                    traceback="", attempts=0, blocked_by=blocker,
                )
                parked += 1
                continue
            failure = item if isinstance(item, Failure) else await self._attempt(
                conn, Delivery(record, item), context
            )
            if failure is None:
                continue
            await parking.park(
                conn, self.name, record, error=failure.error, traceback=failure.traceback,
                attempts=failure.attempts, blocked_by=None,
            )
            parked += 1
            blocked[record.stream_id] = record.global_position
            logger.error(
                "%s: parked event %s (%s, stream %r, position %s) after %d attempt(s): %s",
                self.name, record.event_id, record.event_type, record.stream_id,
                tuple(record.global_position), failure.attempts, failure.error,
            )
            if self.subscriber.failure.on_failure == "halt":
                halted_reason = (
                    f"event {record.event_id} ({record.event_type}, stream "
                    f"{record.stream_id!r}, position {tuple(record.global_position)}) failed "
                    f"{failure.attempts} time(s): {failure.error}"
                )
                break
        await self._advance(conn, new, len(records), started, halted_reason)
        return BatchOutcome(len(records), parked, new, halted_reason)

    async def attempt_once(self, conn: AsyncConnection, delivery: Delivery) -> Failure | None:
        """Apply one event in a savepoint, once (retrying a parked event)."""
        context = BatchContext(conn, self.name, self.replaying, self.store)
        return await self._attempt(conn, delivery, context, retries=0)

    async def _attempt(
        self, conn: AsyncConnection, delivery: Delivery, context: BatchContext,
        retries: int | None = None,
    ) -> Failure | None:
        policy = self.subscriber.failure
        allowed = policy.retries if retries is None else retries
        attempts = 0
        while True:
            attempts += 1
            try:
                async with conn.begin_nested():
                    await self.subscriber.handle_batch([delivery], context)
            except Exception as exc:
                if conn.invalidated or isinstance(exc, SubscriberUnavailable):
                    raise
                if attempts > allowed:
                    return Failure(describe(exc), traceback_module.format_exc(), attempts)
                delay = policy.delay(attempts)
                logger.warning(
                    "%s: event %s failed (%s); retry %d of %d in %.2fs",
                    self.name, delivery.record.event_id, describe(exc), attempts, allowed,
                    delay,
                )
                await self.sleep(delay)
            else:
                return None

    def _decode(self, record: RecordedEvent) -> Event | Failure:
        try:
            return self.store.registry.decode(record)
        except (UnknownEventType, EventDecodeError) as exc:
            # Retrying cannot help: the data or the registration must change first.
            return Failure(describe(exc), traceback_module.format_exc(), 1)

    async def _advance(
        self,
        conn: AsyncConnection,
        new: GlobalPosition,
        events: int,
        started: float | None,
        halted_reason: str | None,
    ) -> None:
        if started is not None:
            elapsed = max(time.monotonic() - started, 1e-6)
            current = events / elapsed
            self.rate = current if self.rate == 0 else 0.7 * self.rate + 0.3 * current
        await checkpoints.advance(
            conn, self.name, self.checkpoint, new, rate=self.rate, halted_reason=halted_reason
        )
