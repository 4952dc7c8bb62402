"""The one subscriber interface of the runner: read models, process managers and relays.

A subscriber has a stable name (its checkpoint, lease and parked events are stored under
it), the event types it wants (``None``: all) and a ``handle_batch`` coroutine. The runner
calls ``handle_batch`` inside the database transaction that also advances the checkpoint;
what a subscriber does with the events (write tables, send commands) is its own business.
``around_batch`` wraps each such transaction from outside it: the place for work that must
not run with the transaction open, such as waiting for anything outside the database (a
relay publishes there and waits for the broker's confirms; a process manager appends its
commands there on SQLite, where the transaction holds the database's write lock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.event import Event
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent

OnFailure = Literal["park", "halt"]
"""What happens to an event that still fails after its retries: parked while everything
else flows on (later events of its stream park behind it), or the subscriber halts."""


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """How a subscriber's failing events are retried and then handled.

    An event is tried ``1 + retries`` times, waiting ``backoff * 2**n`` seconds (at most
    ``max_backoff``) before retry ``n + 1``; then ``on_failure`` decides.
    """

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    on_failure: OnFailure = "park"

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must not be negative")
        if self.on_failure not in ("park", "halt"):
            raise ValueError(f"on_failure must be 'park' or 'halt', not {self.on_failure!r}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return Backoff(initial=self.backoff, cap=self.max_backoff).delay(attempt)


class Delivery:
    """One event handed to a subscriber: the stored envelope and the decoded event.

    Use ``record.event_id`` to make effects outside the database idempotent. The runner
    hands over events undecoded: ``event`` decodes (and validates) on first use, so a
    subscriber that needs only the envelope (stream, type, position) pays nothing for it.
    An event that does not decode raises there; the runner then parks it, never skips it.
    """

    __slots__ = ("_decode", "_event", "record")

    def __init__(
        self,
        record: RecordedEvent,
        event: Event | None = None,
        *,
        decode: Callable[[RecordedEvent], Event] | None = None,
    ) -> None:
        if (event is None) == (decode is None):
            raise TypeError("Delivery takes the decoded event or a decode function: one of them")
        self.record = record
        self._event = event
        self._decode = decode

    @property
    def event(self) -> Event:
        """The typed event (``registry.decode`` of the record, done once)."""
        if self._event is None:
            assert self._decode is not None
            self._event = self._decode(self.record)
        return self._event

    def __repr__(self) -> str:
        record = self.record
        return f"Delivery({record.event_type} of {record.stream_id!r} at {record.position})"


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the runner gives ``handle_batch``: the transaction's connection and facts.

    ``connection`` is in the transaction that commits the batch's database writes together
    with the checkpoint. ``replaying`` is true while a rebuild replays history: subscribers
    with side effects (relays, process managers) must not fire them again then. ``store``
    is the event store the runner reads, for subscribers that append (process managers).
    """

    connection: AsyncConnection
    subscriber: str
    replaying: bool = False
    store: EventStore | None = None


@runtime_checkable
class Subscriber(Protocol):
    """Anything the runner can feed from the global log."""

    @property
    def name(self) -> str:
        """The stable name checkpoints, leases and parked events are stored under."""
        ...

    @property
    def event_types(self) -> frozenset[str] | None:
        """The stored type names to receive, or None for every event."""
        ...

    @property
    def failure(self) -> FailurePolicy:
        """Retries, backoff and what to do with an event that keeps failing."""
        ...

    async def prepare(self, connection: AsyncConnection) -> None:
        """Create what the subscriber needs in the database (idempotent; runs at start)."""
        ...

    def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AbstractAsyncContextManager[None]:
        """What each of the runner's transactions over ``records`` is wrapped in (entered
        before it begins, left after it commits or rolls back). Not used while replaying.
        A retry of parked events passes those events (their streams have parked events).
        Projections need nothing: ``contextlib.nullcontext()``."""
        ...

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        """Apply events in log order. Raise to fail the batch: it is then redone one event
        at a time so the failing event can be retried and parked alone."""
        ...
