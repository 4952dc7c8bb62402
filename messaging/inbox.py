"""The inbox: makes a consumer of relayed events idempotent.

Brokers deliver at least once, and a relay republishes after a crash, so a consumer sees
some messages twice. The inbox records each processed message id (the event id) in
``eventfold_inbox`` in the *same transaction* as the consumer's own writes: the effect and
"processed" commit together or not at all, and a redelivered message finds its id already
there and does nothing. The row is inserted first, so two deliveries racing on two
connections serialize on its primary key: one processes, the other waits and then sees a
duplicate.

``Inbox.process(message_id, work)`` is the short form; ``Inbox.handle(message_id)`` the
block form. The consumers of RabbitMQ, NATS JetStream and Kafka (``eventfold.messaging.rabbitmq``,
``.nats``, ``.kafka``) run a handler per message through the inbox and acknowledge (or commit
the offset) only after the commit. ``Inbox.prune`` forgets ids older than the brokers'
redelivery horizon; ``schedule_prune`` runs it from APScheduler.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.cloudevents import from_cloudevent
from eventfold.eventstore.errors import CloudEventError
from eventfold.eventstore.periodic import every
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.schema import inbox as inbox_table
from eventfold.projections.database import Database
from eventfold.projections.subscriber import FailurePolicy
from eventfold.projections.subscription import describe

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger("eventfold.inbox")

MessageId = uuid.UUID | str
"""An event id, or any other message id (non-UUID text maps to a stable UUID)."""

# Non-UUID message ids (from producers other than eventfold) are stored as UUIDv5s.
_TEXT_IDS = uuid.UUID("2b0d3c8e-4d4a-5f0b-8b1e-5c9a7e6f1d20")

InboxHandler = Callable[[RecordedEvent, AsyncConnection], Awaitable[None]]
"""A consumer's handler: the relayed envelope, and the connection of the inbox's
transaction (write the effect through it so both commit together)."""


def message_uuid(message_id: MessageId) -> uuid.UUID:
    """The UUID an id is stored under: itself, or a stable UUIDv5 of non-UUID text."""
    if isinstance(message_id, uuid.UUID):
        return message_id
    if not isinstance(message_id, str) or not message_id:
        raise ValueError(f"a message id must be a UUID or non-empty text, not {message_id!r}")
    try:
        return uuid.UUID(message_id)
    except ValueError:
        return uuid.uuid5(_TEXT_IDS, message_id)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """What ``Inbox.handle`` yields: the transaction's connection and whether the message
    was processed before (then skip the work; anything written is rolled back anyway)."""

    connection: AsyncConnection
    message_id: uuid.UUID
    duplicate: bool


class Inbox:
    """Processed message ids of one consumer, recorded with the consumer's effects.

    ``engine`` is an async SQLAlchemy engine on the consumer's database, migrated with
    ``eventfold migrate`` (it holds ``eventfold_inbox``); on SQLite create it with
    ``eventfold.eventstore.engine.create_engine``. ``consumer`` names the consumer: each one keeps
    its own ids, so two services can share a database.
    """

    def __init__(self, engine: AsyncEngine, consumer: str) -> None:
        if not consumer:
            raise ValueError("an inbox needs a consumer name: its processed ids are kept under it")
        self.engine = engine
        self.consumer = consumer
        self._db = Database(engine)

    @asynccontextmanager
    async def handle(self, message_id: MessageId) -> AsyncIterator[InboxEntry]:
        """A transaction in which the message is marked processed, or found processed.

        Write the effect through ``entry.connection`` when ``entry.duplicate`` is false;
        it commits with the mark when the block ends. On a duplicate the transaction is
        rolled back at the end, whatever the block wrote. An exception in the block rolls
        everything back, so a redelivery will process the message again.
        """
        key = message_uuid(message_id)
        async with self._db.transaction() as conn:
            duplicate = not await self._mark(conn, key)
            if not duplicate:
                yield InboxEntry(conn, key, duplicate=False)
                return
            try:
                yield InboxEntry(conn, key, duplicate=True)
            finally:
                await conn.rollback()

    async def process(
        self, message_id: MessageId, work: Callable[[AsyncConnection], Awaitable[Any]]
    ) -> bool:
        """Run ``work(connection)`` once per message id; return False (without running it)
        when the id was processed before."""
        async with self.handle(message_id) as entry:
            if entry.duplicate:
                return False
            await work(entry.connection)
        return True

    async def seen(self, message_id: MessageId) -> bool:
        """Whether the message id is recorded as processed."""
        query = sa.select(sa.literal(1)).where(
            inbox_table.c.consumer == self.consumer,
            inbox_table.c.message_id == message_uuid(message_id),
        )
        async with self._db.reading() as conn:
            return (await conn.execute(query)).first() is not None

    async def count(self) -> int:
        """How many message ids this consumer keeps."""
        query = sa.select(sa.func.count()).select_from(inbox_table).where(
            inbox_table.c.consumer == self.consumer
        )
        async with self._db.reading() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def prune(self, older_than: timedelta) -> int:
        """Forget ids processed more than ``older_than`` ago (by the database clock);
        return how many. Keep them longer than any broker may redeliver or a relay may
        republish (its outage, plus the time to notice a crash)."""
        seconds = older_than.total_seconds()
        if seconds < 0:
            raise ValueError("older_than must not be negative")
        query = inbox_table.delete().where(
            inbox_table.c.consumer == self.consumer,
            inbox_table.c.processed_at < self._db.timestamp_ago(seconds),
        )
        async with self._db.transaction() as conn:
            result = await conn.execute(query)
        return int(result.rowcount)

    async def _mark(self, conn: AsyncConnection, key: uuid.UUID) -> bool:
        # Insert first: the primary key makes a concurrent second delivery wait for this
        # transaction and then find the row (ON CONFLICT DO NOTHING: no error, no abort).
        # To the millisecond, as prune compares.
        statement = self._db.insert(inbox_table).values(
            consumer=self.consumer, message_id=key, processed_at=self._db.current_timestamp()
        ).on_conflict_do_nothing()
        result = await conn.execute(statement)
        return bool(result.rowcount == 1)

    def __repr__(self) -> str:
        return f"Inbox({self.consumer!r})"


def schedule_prune(
    scheduler: AsyncIOScheduler,
    inbox: Inbox,
    *,
    older_than: timedelta,
    every_seconds: float = 3600,
) -> Any:
    """Add ``inbox.prune(older_than)`` to an APScheduler ``AsyncIOScheduler``
    (``eventstore.periodic.every``: runs never overlap). Returns the APScheduler job."""

    async def run() -> None:
        removed = await inbox.prune(older_than)
        logger.info("inbox %s: pruned %d processed id(s)", inbox.consumer, removed)

    return every(scheduler, every_seconds, run, id=f"eventfold-inbox-prune:{inbox.consumer}")


# -- consuming through the inbox ---------------------------------------------------------

Outcome = Literal["processed", "duplicate", "failed", "unreadable"]
"""What became of one delivery: its effect committed, it was a duplicate, the handler kept
failing (the broker redelivers it later), or it is no eventfold CloudEvent (dead-letter)."""


@dataclass(slots=True)
class ConsumerStats:
    """Counts of a consumer's deliveries, updated after each one's commit."""

    delivered: int = 0
    processed: int = 0
    duplicates: int = 0
    failed: int = 0
    unreadable: int = 0


class InboxDispatch:
    """Runs a handler for each delivered message body through an inbox, with retries.

    The broker adapters feed it message bodies and acknowledge by its answer: ``processed``
    and ``duplicate`` are acknowledged, ``failed`` is redelivered, ``unreadable`` is
    rejected (dead-lettered where the broker is set up for it).
    """

    def __init__(
        self, inbox: Inbox, handler: InboxHandler, *, failure: FailurePolicy | None = None
    ) -> None:
        self.inbox = inbox
        self.handler = handler
        self.failure = failure or FailurePolicy(retries=3, backoff=0.2, max_backoff=5.0)
        self.stats = ConsumerStats()
        self._changed = asyncio.Condition()

    async def deliver(self, body: bytes) -> Outcome:
        """Handle one message body (a CloudEvents JSON envelope)."""
        self.stats.delivered += 1
        try:
            record = from_cloudevent(body)
        except CloudEventError as exc:
            logger.error("%s: unreadable message: %s", self.inbox.consumer, exc)
            return await self._count("unreadable")
        attempt = 0
        while True:
            attempt += 1
            try:
                done = await self.inbox.process(
                    record.event_id, lambda conn: self.handler(record, conn)
                )
            except Exception as exc:
                if attempt > self.failure.retries:
                    logger.error(
                        "%s: event %s (%s) failed %d time(s), left for redelivery: %s",
                        self.inbox.consumer, record.event_id, record.event_type, attempt,
                        describe(exc),
                    )
                    return await self._count("failed")
                await asyncio.sleep(self.failure.delay(attempt))
                continue
            return await self._count("processed" if done else "duplicate")

    async def wait_until(
        self, condition: Callable[[ConsumerStats], bool], timeout: float = 10.0
    ) -> ConsumerStats:
        """Wait until ``condition(stats)`` holds (checked after every delivery and
        ``notify``)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: condition(self.stats))
        except TimeoutError:
            raise TimeoutError(
                f"consumer {self.inbox.consumer!r}: condition not met within {timeout}s "
                f"({self.stats})"
            ) from None
        return self.stats

    async def _count(self, outcome: Outcome) -> Outcome:
        if outcome == "processed":
            self.stats.processed += 1
        elif outcome == "duplicate":
            self.stats.duplicates += 1
        elif outcome == "failed":
            self.stats.failed += 1
        else:
            self.stats.unreadable += 1
        await self.notify()
        return outcome

    async def notify(self) -> None:
        """Check the ``wait_until`` conditions again (after a delivery, or when an adapter's
        own state changed: an offset committed, the broker lost)."""
        async with self._changed:
            self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer group is behind on one partition of a topic."""

    topic: str
    partition: int
    committed: int
    """The group's committed offset: the next message it will handle."""
    end: int
    """The partition's end (its high watermark)."""

    @property
    def lag(self) -> int:
        """Messages in the partition the group has not committed yet."""
        return max(0, self.end - self.committed)


class BrokerConsumer(abc.ABC):
    """What every broker's inbox consumer shares: the dispatch, its stats, waiting on
    them, and ``async with`` for start and stop. Subclasses connect and feed ``dispatch``."""

    dispatch: InboxDispatch

    @property
    def name(self) -> str:
        """The consumer's name: its inbox's consumer name."""
        return self.dispatch.inbox.consumer

    async def backlog(self) -> list[PartitionLag]:
        """What the consumer still has to handle, per partition, read from the broker
        (from any process; ``eventfold projections status`` shows it for an App's
        ``consumers``). Empty for brokers without partitions."""
        return []

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and start consuming."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop consuming and close the connection. A message in hand is cancelled: its
        inbox transaction rolls back and, never acknowledged, it is delivered again (the inbox
        keeps its effect once)."""

    @property
    def stats(self) -> ConsumerStats:
        """Deliveries so far: processed, duplicates, failed, unreadable."""
        return self.dispatch.stats

    async def wait_until(
        self, condition: Callable[[ConsumerStats], bool], timeout: float = 10.0
    ) -> ConsumerStats:
        """Wait until ``condition(stats)`` holds (see ``InboxDispatch.wait_until``)."""
        return await self.dispatch.wait_until(condition, timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
