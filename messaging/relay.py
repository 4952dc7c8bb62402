"""The relay: a subscriber that publishes the global log to a message broker.

The events table is the outbox. A ``Relay`` is one more subscriber of the runner, so its
checkpoint, lease (one publisher at a time across processes), retries, parked events and
status come from the runner like any projection's.

**It never waits for the broker with a transaction open.** A broker's confirms can take up
to its confirm timeout (30 s) at an outage's onset; inside the batch's transaction that
would hold the checkpoint row's lock, and with it, on PostgreSQL, an xid that holds every
reader of the global log back (on SQLite, the database's write lock). So per batch:

1. ``around_batch``, before the transaction: every event that will go through is turned
   into a ``Message`` (the CloudEvents 1.0 JSON envelope as the body, ``event_id`` as the
   message id, correlation, causation and trace context as headers,
   ``<category>.<event_type>`` as the routing key) and handed to the ``Publisher`` in log
   order (so in per-stream order), which returns only once the broker confirmed every one
   (RabbitMQ publisher confirms, JetStream PubAcks). Held back, as the runner will park
   them: events of a stream with a parked event, events that do not decode, and the
   events of their streams after them.
2. ``handle_batch``, inside the transaction, does no broker I/O: it checks that each event
   was confirmed (or raises the broker's refusal, for the runner to retry and park), and
   the runner commits the checkpoint.

At least once: a crash between the broker's confirms and the commit publishes the batch
again; the message ids let the broker (JetStream's duplicate window) or the consumer (the
inbox, ``eventfold.messaging.inbox``) drop the copies. A broker outage raises
``BrokerUnavailable`` before the transaction begins: the runner backs off and reads the
batch again from the same checkpoint, nothing is skipped or parked.

A message the broker refuses raises ``MessageRejected`` from ``handle_batch``: retried (each
retry publishes it again, before its own transaction), then parked by the failure policy,
with its stream's later events parked behind it. The messages before it were confirmed;
those after it are published again without its stream's. Honestly: the later messages of
its stream that were already in flight in the same publish call (publishing is pipelined)
may have reached the broker, ahead of the refused one; they are parked behind it all the
same and published again, in order, after it once it goes through.

An event that reaches ``handle_batch`` without having been published ahead (its stream's
parked events changed between ``around_batch`` and the transaction: an operator retried or
skipped one) raises ``RelayBatchStale``: the runner rolls the batch back and reads it again.

During a rebuild's replay (``BatchContext.replaying``) a relay publishes nothing: what
it replays was published when it first passed. To send history again, put the relay's
checkpoint back instead (docs/messaging.md).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.cloudevents import (
    DEFAULT_SOURCE,
    STRUCTURED_CONTENT_TYPE,
    to_cloudevent_json,
)
from eventfold.eventstore.errors import EventDecodeError, UnknownEventType
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent
from eventfold.messaging.errors import MessageRejected, RelayBatchStale
from eventfold.projections import parking
from eventfold.projections.database import Database
from eventfold.projections.partitions import stream_key, unit_of
from eventfold.projections.subscriber import BatchContext, Delivery, FailurePolicy

RELAY_FAILURE = FailurePolicy(retries=5, backoff=0.5, max_backoff=10.0, on_failure="park")
"""Relays retry a refused message longer than projections do before parking it."""

CORRELATION_HEADER = "correlation-id"
CAUSATION_HEADER = "causation-id"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"
_HEADERS = {
    "correlation_id": CORRELATION_HEADER,
    "causation_id": CAUSATION_HEADER,
    "traceparent": TRACEPARENT_HEADER,
    "tracestate": TRACESTATE_HEADER,
}
# Characters that would split or wildcard a NATS subject token or an AMQP topic word.
_TOKEN_UNSAFE = str.maketrans({c: "_" for c in ".*>#\t\n\r\x0b\x0c "})


@dataclass(frozen=True, slots=True)
class Message:
    """One event as a broker message: what every publisher needs, broker-neutral."""

    message_id: str
    """The event id: AMQP ``message_id``, JetStream ``Nats-Msg-Id``."""
    event_type: str
    category: str
    body: bytes
    """The CloudEvents 1.0 structured JSON envelope."""
    headers: dict[str, str] = field(default_factory=dict)
    """Correlation, causation and trace context (only those the event has)."""
    record: RecordedEvent | None = None
    content_type: str = STRUCTURED_CONTENT_TYPE

    @property
    def topic(self) -> str:
        """``<category>.<event_type>``: the routing key (RabbitMQ) or subject tail (NATS)."""
        return f"{token(self.category)}.{token(self.event_type)}"


def token(text: str) -> str:
    """``text`` as one topic word: dots, wildcards and blanks become ``_``."""
    return text.translate(_TOKEN_UNSAFE) or "_"


def message_for(
    record: RecordedEvent, *, source: str = DEFAULT_SOURCE, type_prefix: str = ""
) -> Message:
    """The broker message of a recorded event."""
    headers = {
        header: value
        for key, header in _HEADERS.items()
        if isinstance(value := record.metadata.get(key), str)
    }
    return Message(
        message_id=str(record.event_id),
        event_type=record.event_type,
        category=record.category,
        body=to_cloudevent_json(record, source=source, type_prefix=type_prefix),
        headers=headers,
        record=record,
    )


@runtime_checkable
class Publisher(Protocol):
    """A broker connection a relay publishes through (``eventfold.messaging.rabbitmq``,
    ``eventfold.messaging.nats``, ``eventfold.messaging.kafka``).

    ``publish`` sends the messages in the given order and returns once the broker has
    confirmed every one. It raises ``BrokerUnavailable`` when the broker cannot be reached
    or does not confirm in time, ``MessageRejected`` naming the first message it refused
    (every message before that one was confirmed); it reconnects by itself on the next
    call after a lost connection.
    """

    @property
    def broker(self) -> str:
        """The broker, for messages and logs: ``RabbitMQ at amqp://host:5672/``."""
        ...

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish in order; return when every message is confirmed."""
        ...

    async def close(self) -> None:
        """Close the connection (publishing again reconnects)."""
        ...


class Relay:
    """A subscriber that publishes events to a broker, at least once, in log order.

    ``source`` is the CloudEvents source of every message (e.g. ``eventfold://orders``);
    ``event_types`` narrows what is published (None: every event); ``partitions=N`` splits
    it by stream id into N partitions that runners share (each publishes its streams in
    order, with its own checkpoint and lease).
    """

    def __init__(
        self,
        name: str,
        publisher: Publisher,
        *,
        event_types: frozenset[str] | set[str] | None = None,
        source: str = DEFAULT_SOURCE,
        type_prefix: str = "",
        failure: FailurePolicy = RELAY_FAILURE,
        partitions: int = 1,
    ) -> None:
        if not name:
            raise ValueError("a relay needs a stable name: its checkpoint is stored under it")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(
                f"a relay's partitions must be a whole number of at least 1 (got {partitions!r})"
            )
        self._name = name
        self._partitions = partitions
        self.publisher = publisher
        self._event_types = None if event_types is None else frozenset(event_types)
        self.source = source
        self.type_prefix = type_prefix
        self._failure = failure
        self.published = 0
        """Messages this relay object has had confirmed (republished copies included)."""
        self._outcomes: dict[uuid.UUID, MessageRejected | None] = {}
        """What the broker said of each event published ahead of the batch's transaction
        now open (None: confirmed); keyed by event so partitions of one relay can share it."""

    @property
    def name(self) -> str:
        """The stable name the relay's checkpoint is stored under."""
        return self._name

    @property
    def event_types(self) -> frozenset[str] | None:
        """The stored type names published, or None for every event."""
        return self._event_types

    @property
    def partitions(self) -> int:
        """How many partitions runners share the relay as (1: one publisher at a time)."""
        return self._partitions

    partition_key = stream_key
    """Partitions go by stream id (the store filters them): a stream's events are published
    by one partition, in order, which is the order brokers keep per key."""

    @property
    def failure(self) -> FailurePolicy:
        """Retries and parking for messages the broker refuses (outages never park)."""
        return self._failure

    async def prepare(self, connection: AsyncConnection) -> None:
        """Nothing to create in the database: a relay only keeps a checkpoint."""

    @asynccontextmanager
    async def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AsyncIterator[None]:
        """Publish, before the transaction, what the transaction will let through.

        Events of a stream whose first parked event is not among ``records`` are held back
        (the runner parks them behind it); a retry of parked events passes those events
        themselves, so they are published, stream by stream in order.
        """
        async with Database(engine).reading() as conn:
            # A partition's parked events are stored under its own name.
            blocked = await parking.blocked_streams(conn, unit_of(self, self._name, records))
        passed = {record.global_position for record in records}
        held = {stream for stream, first in blocked.items() if first not in passed}
        ahead: list[RecordedEvent] = []
        for record in records:
            if record.stream_id in held:
                continue
            try:
                store.registry.decode(record)
            except (UnknownEventType, EventDecodeError):
                held.add(record.stream_id)  # the runner parks it, and its stream behind it
                continue
            ahead.append(record)
        outcomes = await self._publish(ahead)
        self._outcomes.update(outcomes)
        try:
            yield
        finally:
            for event_id in outcomes:
                self._outcomes.pop(event_id, None)

    async def _publish(
        self, records: list[RecordedEvent]
    ) -> dict[uuid.UUID, MessageRejected | None]:
        """Publish in order until every message is confirmed or refused (None: confirmed).

        After a refusal the messages before it are confirmed; the rest are published again
        without the refused message's stream, whose later events are not sent ahead of it.
        """
        outcomes: dict[uuid.UUID, MessageRejected | None] = {}
        pending = [
            (record, message_for(record, source=self.source, type_prefix=self.type_prefix))
            for record in records
        ]
        while pending:
            try:
                await self.publisher.publish([message for _, message in pending])
            except MessageRejected as exc:
                ids = [message.message_id for _, message in pending]
                if str(exc.message_id) not in ids:
                    raise  # a publisher that breaks its contract: nothing is known confirmed
                refused = ids.index(str(exc.message_id))
                for record, _ in pending[:refused]:
                    outcomes[record.event_id] = None
                stopped = pending[refused][0]
                outcomes[stopped.event_id] = exc
                self.published += refused
                pending = [
                    (record, message) for record, message in pending[refused + 1:]
                    if record.stream_id != stopped.stream_id
                ]
                continue
            for record, _ in pending:
                outcomes[record.event_id] = None
            self.published += len(pending)
            pending = []
        return outcomes

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        """Record what the broker confirmed ahead of the transaction (no broker I/O here)."""
        if context.replaying:
            return
        for delivery in batch:
            record = delivery.record
            if record.event_id not in self._outcomes:
                raise RelayBatchStale(self._name, record.event_id, record.stream_id)
            refused = self._outcomes[record.event_id]
            if refused is not None:
                # Raised afresh each time: the redo one event at a time meets it again.
                raise MessageRejected(refused.broker, refused.message_id, refused.reason)

    async def close(self) -> None:
        """Close the publisher's connection."""
        await self.publisher.close()

    def __repr__(self) -> str:
        return f"Relay({self._name!r}, {self.publisher.broker})"
