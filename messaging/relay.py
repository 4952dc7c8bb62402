"""The relay: a subscriber that publishes the global log to a message broker.

The events table is the outbox. A ``Relay`` is one more subscriber of the runner, so its
checkpoint, lease (one publisher at a time across processes), retries, parked events and
status come from the runner like any projection's. Per batch it:

1. turns every event into a ``Message`` - the CloudEvents 1.0 JSON envelope as the body,
   ``event_id`` as the message id, correlation, causation and trace context as headers,
   ``<category>.<event_type>`` as the routing key;
2. hands them to its ``Publisher`` in log order (so in per-stream order), which returns
   only once the broker confirmed every one (RabbitMQ publisher confirms, JetStream PubAcks);
3. returns, and the runner commits the checkpoint.

At least once: a crash between the broker's confirms and the commit publishes the batch
again; the message ids let the broker (JetStream's duplicate window) or the consumer (the
inbox, ``eventfold.messaging.inbox``) drop the copies. A broker outage raises ``BrokerUnavailable``:
the batch rolls back and is retried from the same checkpoint, nothing is skipped or parked.
A message the broker refuses raises ``MessageRejected``: retried, then parked by the
failure policy, with its stream's later events parked behind it.

During a rebuild's replay (``BatchContext.replaying``) a relay publishes nothing: what
it replays was published when it first passed. To send history again, put the relay's
checkpoint back instead (docs/messaging.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.cloudevents import (
    DEFAULT_SOURCE,
    STRUCTURED_CONTENT_TYPE,
    to_cloudevent_json,
)
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent
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
    ``eventfold.messaging.nats``).

    ``publish`` sends the messages in the given order and returns once the broker has
    confirmed every one. It raises ``BrokerUnavailable`` when the broker cannot be reached
    or does not confirm in time, ``MessageRejected`` when it refuses a message; it
    reconnects by itself on the next call after a lost connection.
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
    ``event_types`` narrows what is published (None: every event).
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
    ) -> None:
        if not name:
            raise ValueError("a relay needs a stable name: its checkpoint is stored under it")
        self._name = name
        self.publisher = publisher
        self._event_types = None if event_types is None else frozenset(event_types)
        self.source = source
        self.type_prefix = type_prefix
        self._failure = failure
        self.published = 0
        """Messages this relay object has had confirmed (republished copies included)."""

    @property
    def name(self) -> str:
        """The stable name the relay's checkpoint is stored under."""
        return self._name

    @property
    def event_types(self) -> frozenset[str] | None:
        """The stored type names published, or None for every event."""
        return self._event_types

    @property
    def failure(self) -> FailurePolicy:
        """Retries and parking for messages the broker refuses (outages never park)."""
        return self._failure

    async def prepare(self, connection: AsyncConnection) -> None:
        """Nothing to create in the database: a relay only keeps a checkpoint."""

    def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AbstractAsyncContextManager[None]:
        """Nothing to do outside the batch's transaction."""
        return nullcontext()

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        """Publish the batch and return once the broker confirmed all of it."""
        if context.replaying or not batch:
            return
        messages = [
            message_for(d.record, source=self.source, type_prefix=self.type_prefix)
            for d in batch
        ]
        await self.publisher.publish(messages)
        self.published += len(messages)

    async def close(self) -> None:
        """Close the publisher's connection."""
        await self.publisher.close()

    def __repr__(self) -> str:
        return f"Relay({self._name!r}, {self.publisher.broker})"
