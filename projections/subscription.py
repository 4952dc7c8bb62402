"""The subscription engine: feeds one subscriber from the global log, batch by batch.

**Never wait with a transaction open.** A batch is read from the store outside any
transaction; transactions only write, and every wait - a failing event's retry backoff here,
the runner's error backoff and its polling for new events - happens between them. Why: on
SQLite an open write transaction holds the database's one write lock, so every writer (the
application's appends included) waits or fails; on PostgreSQL an open xid holds
``pg_snapshot_xmin``, so every reader of the global log stops seeing new commits. One
failing subscriber must not slow another, nor a writer.

A batch goes through in up to three kinds of transaction, each of which locks the
checkpoint row, checks it is where this holder left it (a mismatch means another holder, a
rebuild's swap or a reset moved it: roll back, reload) and advances it by compare-and-set
in the same commit as the writes - so effects are exactly once whatever fails:

1. *run*: the whole batch at once (the fast path: bulk writers keep their speed); if that
   fails, its transaction rolls back and a new one takes the batch one event per savepoint
   (as does the first, when the batch has events of a stream with parked events, which park
   behind it), until the first event whose handler fails. The good events before it
   commit, the checkpoint moves to just before it.
2. *retry*: with no transaction open the engine waits the failure policy's backoff, then
   tries that event alone in a fresh transaction, as often as the policy allows.
3. *park*: an event that still fails is parked in a transaction of its own, which moves the
   checkpoint past it (or halts the subscriber, by policy). Later events of its stream park
   behind it; the rest of the batch goes on with a new run.

A failure that is not the handler's (the connection is lost) breaks the transaction itself;
it rolls back - parked rows included - and goes up to the runner, so an event is never
parked for an outage. A subscriber signals an outage of its own (a broker) the same way by
raising ``SubscriberUnavailable`` - from ``handle_batch``, or from ``around_batch`` before
the transaction even begins (a relay, which waits for its broker there).

Batches are kept short in time, not only in count: a transaction that runs handlers holds
the same things (on PostgreSQL its xid holds every reader of the log back while it lasts),
so a subscriber whose handlers are slow reads fewer events per batch - as many as fit in
about ``BATCH_SECONDS`` at the pace its last transactions went, one at the least.

Events reach the subscriber undecoded: ``Delivery.event`` decodes on first use, so a
subscriber that reads only envelopes skips the validation (about a sixth of a rebuild's
client time per event). An event whose data does not decode (``registry.decode`` raises)
fails the batch that reads it and is then parked, without retries, like any poison event.
A row the store cannot even return (``read_all`` raises ``EventDecodeError``) is narrowed
down: the batch is read again shorter until it stops before that row, and what precedes it
goes through. The row itself cannot be parked - the error names its stream and position,
not its place in the log - so the subscriber halts there with that reason (nothing is
skipped silently); once the row is repaired, ``eventfold projections retry NAME`` lets it
go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback as traceback_module
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore import instrumentation
from eventfold.eventstore.errors import EventDecodeError, UnknownEventType
from eventfold.eventstore.event import Event
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, GlobalPosition, RecordedEvent
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.errors import CheckpointMoved, ProjectionHalted, SubscriberUnavailable
from eventfold.projections.partitions import Partition
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
    """What one committed transaction did."""

    events: int
    parked: int
    checkpoint: GlobalPosition
    halted_reason: str | None


@dataclass(frozen=True, slots=True)
class _Run:
    """How far a run got: ``consumed`` events applied or parked; ``failure`` is set when
    it stopped at the next one because its handler failed (to be retried)."""

    consumed: int
    parked: int
    failure: Failure | None
    halted_reason: str | None


class _BatchFailed(Exception):
    """A whole batch failed in a transaction of its own, which must roll back."""


BATCH_SECONDS = 0.2
"""About how long a batch's transaction may stay open: a slow subscriber's batches are cut
to what its handlers get through in this time (measured: a 0.4 s-per-event handler in
batches of 500 held a PostgreSQL transaction open for 8.8 s, and a healthy projection beside
it fell 21 events behind a steady writer; one event per transaction, 3)."""


HEAD_SECONDS = 1.0
"""How often a subscription that is catching up reads the log's head (for progress, lag
and to know when it has caught up); one that is caught up reads it every step."""


def describe(exc: BaseException) -> str:
    """One line naming an exception: ``ValueError: bad amount``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Subscription:
    """Processes one subscriber's batches; the runner and rebuilds drive it.

    ``sleep`` is how retry backoff waits (never with a transaction open); the runner
    passes one that gives up when it stops. ``partition``: feed only that partition's
    events (the checkpoint still moves past the others' it read).
    """

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
        partition: Partition | None = None,
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
        self.partition = partition
        self.checkpoint: GlobalPosition = START
        self.caught_up_to: GlobalPosition = START
        self.halted_reason: str | None = None
        self.ready = False
        """Whether ``setup`` ran (the subscriber's tables exist, the checkpoint is loaded)."""
        self.rate = 0.0
        self.more = False
        """Whether the last step stopped short of the end of the log it saw (it read a
        full batch): step again at once rather than wait for new events."""
        self.head: GlobalPosition = START
        """The log's head as the last step saw it."""
        self.parked = 0
        """How many events this subscription parked (blocked ones included)."""
        self._started: float | None = None
        self._head_read = -math.inf
        self._seconds_per_event: float | None = None
        self._through: GlobalPosition | None = None
        """The last event read (a partition's batch may end with another's events)."""
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
            await checkpoints.ensure(self.db, conn, self.name, self._partition_row())
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
        """Process the next batch; return how many of its events were read (a partition's:
        the others' are passed over).

        Raises ``CheckpointMoved`` (nothing more committed; ``reload`` and go on) and
        ``ProjectionHalted`` (the subscriber is halted, now or since earlier).
        """
        if self.halted_reason is not None:
            raise ProjectionHalted(self.name, self.halted_reason)
        self._started = time.monotonic()
        # Catching up (the last batch was full), the head is read once a second, not per
        # batch: a round trip fewer per batch. A short batch read against an older head
        # proves nothing, so the next step reads the head and looks again.
        fresh = not self.more or self._started - self._head_read >= HEAD_SECONDS
        if fresh:
            self.head = await self.store.head()
            self._head_read = self._started
        head = self.head
        limit = self._limit()
        records, whole = await self._read(limit)
        full = not whole or len(records) == limit
        self.more = full or not fresh
        if not full:
            self._head_read = -math.inf  # the next step reads the head
        self._through = records[-1].global_position if records else None
        ours = self._ours(records)
        try:
            if ours:
                with instrumentation.batch(self.name, ours, head):
                    await self._process(ours)
            if self._through is not None and self._through > self.checkpoint:
                # Only other partitions' events after ours: move past them.
                async with self.db.transaction() as conn:
                    await self._check(conn)
                    await self._advance(conn, self._through, 0, None)
                self.checkpoint = self._through
        finally:
            self._through = None
        if not self.more:
            # Everything of our types up to ``head`` was in this read: we are caught up to
            # it even if the last event of ours lies earlier.
            self.caught_up_to = max(self.caught_up_to, head)
        return len(ours)

    async def apply(
        self, conn: AsyncConnection, records: list[RecordedEvent]
    ) -> BatchOutcome:
        """Apply a batch read after ``self.checkpoint`` in the caller's transaction and
        advance the checkpoint there (the caller commits, then sets ``self.checkpoint``).

        Nothing waits here: an event that fails is parked at once, without retries (a
        rebuild's swap uses this while it holds the live checkpoint's lock).
        """
        await self._check(conn)
        ours = self._ours(records)
        self._through = records[-1].global_position if records else None
        try:
            if ours:
                run = await self._apply(conn, ours, retry=False)
                self.parked += run.parked
                new = self._end(ours, run.consumed) if run.consumed else self.checkpoint
            else:
                run = _Run(0, 0, None, None)
                new = self._through or self.checkpoint
                if new > self.checkpoint:
                    await self._advance(conn, new, 0, None)
        finally:
            self._through = None
        return BatchOutcome(run.consumed, run.parked, new, run.halted_reason)

    async def attempt_once(self, conn: AsyncConnection, delivery: Delivery) -> Failure | None:
        """Apply one event in a savepoint, once (retrying a parked event)."""
        return await self._try(conn, delivery, self._context(conn))

    # -- reading -------------------------------------------------------------------------

    def _limit(self) -> int:
        """How many events the next read may return (see ``BATCH_SECONDS``): a batch's
        worth of ours, so a partition of N reads N times that (it keeps about 1 in N)."""
        filtered_here = self.partition is not None and self.partition.in_store is None
        share = self.partition.count if self.partition is not None and filtered_here else 1
        if self._seconds_per_event is None:  # the first batch: the pace is not known yet
            return self.batch_size * share
        fit = int(BATCH_SECONDS / max(self._seconds_per_event, 1e-9))
        return max(1, min(self.batch_size, fit)) * share

    def _paced(self, events: int, seconds: float) -> None:
        """Learn the handlers' pace from a transaction that applied ``events``."""
        if events:
            current = seconds / events
            previous = self._seconds_per_event
            self._seconds_per_event = (
                current if previous is None else 0.5 * previous + 0.5 * current
            )

    async def _read(self, asked: int) -> tuple[list[RecordedEvent], bool]:
        """The next batch, and whether it is the whole batch asked for. A row the store
        cannot read makes the read shorter until it stops before that row."""
        limit = asked
        while True:
            try:
                records = await self.store.read_all(
                    after=self.checkpoint, limit=limit, event_types=self._types,
                    partition=None if self.partition is None else self.partition.in_store,
                )
            except EventDecodeError as exc:
                if limit == 1:
                    await self._halt(
                        f"the store cannot read the event after {tuple(self.checkpoint)}: "
                        f"{describe(exc)}. Repair the row (or add its upcaster), then "
                        f"`eventfold projections retry {self.name}` to go on"
                    )
                limit //= 2
                continue
            return records, limit == asked

    def _decode(self, record: RecordedEvent) -> Event | Failure:
        try:
            return self.store.registry.decode(record)
        except (UnknownEventType, EventDecodeError) as exc:
            # Retrying cannot help: the data or the registration must change first.
            return Failure(describe(exc), traceback_module.format_exc(), 1)

    # -- the three kinds of transaction ---------------------------------------------------

    async def _process(self, records: list[RecordedEvent]) -> None:
        while records:
            run = await self._run(records)
            if run.halted_reason is not None:
                self.halted_reason = run.halted_reason
                raise ProjectionHalted(self.name, run.halted_reason)
            if run.failure is None:
                return
            record = records[run.consumed]
            event = self._decode(record)
            assert isinstance(event, Event)  # undecodable events are parked in the run
            await self._retry_or_park(Delivery(record, event), run.failure)
            records = records[run.consumed + 1:]

    async def _run(self, records: list[RecordedEvent]) -> _Run:
        async with self._around(records):
            began = time.monotonic()
            try:
                async with self.db.transaction() as conn:
                    await self._check(conn)
                    run = await self._apply(conn, records, retry=True, own_transaction=True)
            except _BatchFailed:
                # The whole batch failed and its transaction rolled back: one at a time.
                async with self.db.transaction() as conn:
                    await self._check(conn)
                    run = await self._apply(conn, records, retry=True, whole=False)
            self._paced(run.consumed, time.monotonic() - began)
        if run.consumed:
            self.checkpoint = self._end(records, run.consumed)
        self.parked += run.parked
        return run

    async def _retry_or_park(self, delivery: Delivery, failure: Failure) -> None:
        record = delivery.record
        policy = self.subscriber.failure
        attempts = 1
        while attempts <= policy.retries:
            delay = policy.delay(attempts)
            logger.warning(
                "%s: event %s failed (%s); retry %d of %d in %.2fs",
                self.name, record.event_id, failure.error, attempts, policy.retries, delay,
            )
            await self.sleep(delay)  # between transactions: nothing is held meanwhile
            attempts += 1
            async with self._around([record]), self.db.transaction() as conn:
                await self._check(conn)
                again = await self._try(conn, delivery, self._context(conn))
                if again is None:
                    await self._advance(conn, record.global_position, 1, None)
            if again is None:
                self.checkpoint = record.global_position
                return
            failure = again
        halted_reason = None
        if policy.on_failure == "halt":
            halted_reason = (
                f"event {record.event_id} ({record.event_type}, stream {record.stream_id!r}, "
                f"position {tuple(record.global_position)}) failed {attempts} time(s): "
                f"{failure.error}"
            )
        async with self.db.transaction() as conn:
            await self._check(conn)
            await parking.park(
                conn, self.name, record, error=failure.error, traceback=failure.traceback,
                attempts=attempts, blocked_by=None,
            )
            await self._advance(conn, record.global_position, 1, halted_reason)
        self.checkpoint = record.global_position
        self.parked += 1
        self._log_parked(record, attempts, failure.error)
        if halted_reason is not None:
            self.halted_reason = halted_reason
            raise ProjectionHalted(self.name, halted_reason)

    async def _halt(self, reason: str) -> NoReturn:
        """Halt where the checkpoint is, in a transaction of its own."""
        async with self.db.transaction() as conn:
            await self._check(conn)
            await checkpoints.advance(
                conn, self.name, self.checkpoint, self.checkpoint, halted_reason=reason
            )
        logger.error("%s: halted: %s", self.name, reason)
        self.halted_reason = reason
        raise ProjectionHalted(self.name, reason)

    # -- inside a transaction ---------------------------------------------------------------

    async def _check(self, conn: AsyncConnection) -> None:
        """Lock the checkpoint row; raise unless it is where this holder left it."""
        stored = await checkpoints.read(self.db, conn, self.name, lock=True)
        if stored is None or stored.position != self.checkpoint:
            raise CheckpointMoved(self.name, self.checkpoint, stored and stored.position)
        if stored.halted_reason is not None:
            self.halted_reason = stored.halted_reason
            raise ProjectionHalted(self.name, stored.halted_reason)

    async def _apply(
        self,
        conn: AsyncConnection,
        records: list[RecordedEvent],
        *,
        retry: bool,
        whole: bool = True,
        own_transaction: bool = False,
    ) -> _Run:
        """Apply events in the caller's transaction and advance the checkpoint past those
        dealt with. ``retry``: stop at the first event whose handler fails (the caller
        retries it after a wait); otherwise park it at once.

        The whole batch goes first (unless ``whole`` is false), its events decoded only
        where the subscriber reads them; if that fails, one event at a time, each decoded
        first (one that does not decode is parked at once: retrying cannot help). The whole
        batch runs in a savepoint, except in a transaction of its own
        (``own_transaction``): there a failure raises ``_BatchFailed`` instead, the caller
        rolls back and comes again with ``whole=False``, and no batch pays the savepoint's
        two round trips."""
        blocked = await parking.blocked_streams(conn, self.name)
        context = self._context(conn)
        if whole and not blocked:
            decode = self.store.registry.decode
            batch = [Delivery(record, decode=decode) for record in records]
            try:
                if own_transaction:
                    await self.subscriber.handle_batch(batch, context)
                else:
                    async with conn.begin_nested():
                        await self.subscriber.handle_batch(batch, context)
            except Exception as exc:
                if conn.invalidated or isinstance(exc, SubscriberUnavailable):
                    raise
                logger.info(
                    "%s: a batch of %d failed (%s); redoing it one event at a time",
                    self.name, len(batch), describe(exc),
                )
                if own_transaction:
                    raise _BatchFailed from exc
            else:
                await self._advance(conn, self._end(records, len(records)), len(records), None)
                return _Run(len(records), 0, None, None)

        consumed = parked = 0
        halted_reason: str | None = None
        stopped: Failure | None = None
        for record in records:
            blocker = blocked.get(record.stream_id)
            if blocker is not None:
                await parking.park(
                    conn, self.name, record,
                    error=f"waiting behind the parked event at {tuple(blocker)} of its stream",
                    traceback="", attempts=0, blocked_by=blocker,
                )
                parked += 1
                consumed += 1
                continue
            item = self._decode(record)
            failure = item if isinstance(item, Failure) else await self._try(
                conn, Delivery(record, item), context
            )
            if failure is None:
                consumed += 1
                continue
            if retry and isinstance(item, Event) and self.subscriber.failure.retries > 0:
                stopped = failure
                break
            await parking.park(
                conn, self.name, record, error=failure.error, traceback=failure.traceback,
                attempts=failure.attempts, blocked_by=None,
            )
            parked += 1
            consumed += 1
            blocked[record.stream_id] = record.global_position
            self._log_parked(record, failure.attempts, failure.error)
            if self.subscriber.failure.on_failure == "halt":
                halted_reason = (
                    f"event {record.event_id} ({record.event_type}, stream "
                    f"{record.stream_id!r}, position {tuple(record.global_position)}) failed "
                    f"{failure.attempts} time(s): {failure.error}"
                )
                break
        if consumed:
            await self._advance(conn, self._end(records, consumed), consumed, halted_reason)
        return _Run(consumed, parked, stopped, halted_reason)

    async def _try(
        self, conn: AsyncConnection, delivery: Delivery, context: BatchContext
    ) -> Failure | None:
        """One attempt at one event, in a savepoint."""
        try:
            async with conn.begin_nested():
                await self.subscriber.handle_batch([delivery], context)
        except Exception as exc:
            if conn.invalidated or isinstance(exc, SubscriberUnavailable):
                raise
            return Failure(describe(exc), traceback_module.format_exc(), 1)
        return None

    async def _advance(
        self,
        conn: AsyncConnection,
        new: GlobalPosition,
        events: int,
        halted_reason: str | None,
    ) -> None:
        if self._started is not None:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            current = events / elapsed
            self.rate = current if self.rate == 0 else 0.7 * self.rate + 0.3 * current
            self._started = time.monotonic()
        await checkpoints.advance(
            conn, self.name, self.checkpoint, new, rate=self.rate, halted_reason=halted_reason
        )

    # -- helpers ------------------------------------------------------------------------------

    def _ours(self, records: list[RecordedEvent]) -> list[RecordedEvent]:
        if self.partition is None or self.partition.in_store is not None:
            return records  # the store returned only ours
        accepts = self.partition.accepts
        return [record for record in records if accepts(record)]

    def _partition_row(self) -> tuple[int, int]:
        return (0, 1) if self.partition is None else (self.partition.index, self.partition.count)

    def _end(self, records: Sequence[RecordedEvent], consumed: int) -> GlobalPosition:
        """Where the checkpoint goes once ``consumed`` of ``records`` are dealt with: past
        the other partitions' events read after them when all are."""
        last = records[consumed - 1].global_position
        through = self._through
        if consumed == len(records) and through is not None and through > last:
            return through
        return last

    def _around(self, records: Sequence[RecordedEvent]) -> AbstractAsyncContextManager[None]:
        if self.replaying:
            return nullcontext()
        return self.subscriber.around_batch(records, self.store, self.db.engine)

    def _context(self, conn: AsyncConnection) -> BatchContext:
        return BatchContext(conn, self.name, self.replaying, self.store)

    def _log_parked(self, record: RecordedEvent, attempts: int, error: str) -> None:
        logger.error(
            "%s: parked event %s (%s, stream %r, position %s) after %d attempt(s): %s",
            self.name, record.event_id, record.event_type, record.stream_id,
            tuple(record.global_position), attempts, error,
        )
