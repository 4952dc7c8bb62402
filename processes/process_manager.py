"""Process managers (sagas): per-instance state, commands, compensation, durable timeouts.

A process manager is a subscriber of the runner. Each handled event names an instance by a
correlation key (``key = "order_id"``: the event's ``order_id``); the handler reads and
changes the instance's state, sends commands to aggregates, schedules or cancels
timeouts, records the steps it may have to undo, and completes the instance::

    class Fulfilment(ProcessManager[FulfilmentState]):
        name = "fulfilment"
        key = "order_id"
        state_type = FulfilmentState

        @on(OrderPlaced, start=True)
        async def placed(self, event: OrderPlaced, ctx: ProcessContext[FulfilmentState]):
            ctx.add_step(undo=self.cancel_order)
            await ctx.send(Stock, event.sku, lambda s: s.reserve(event.order_id),
                           undo=self.release_stock)
            ctx.schedule(PaymentOverdue(order_id=event.order_id), after=timedelta(minutes=30))

        @compensation
        async def release_stock(self, step: Step, ctx: ProcessContext[FulfilmentState]):
            await ctx.send(Stock, ctx.state.sku, lambda s: s.release(ctx.key))

What makes it safe to restart at any moment:

- State, steps and deadlines are written in the batch's transaction, with the checkpoint:
  a handled event's effects on them commit exactly once.
- Commands go to the event store, which is not in that transaction, through the
  aggregates' ``Repository`` (snapshots and upcasters apply; a conflict reloads and
  retries). The events a command appends get ids derived from (manager, handled event
  id, command index, event index), and before running a command the manager looks the
  first of those ids up in the store: if a previous attempt (a crash before the
  checkpoint committed, a retried batch) already appended them, the command is not run
  again - even if the aggregate changed since, so that re-running it would now fail or
  decide otherwise. A concurrent identical
  append is caught by the store's idempotent append (``DuplicateEventId`` for our own ids).
- Events appended by commands are caused by the handled event (``causation_id``, its
  ``correlation_id``, its trace context); those appended from a timeout handler by the
  event that scheduled the timeout.

Commands that must land together go in one unit of work: ``async with ctx.together() as
unit: unit.send(...); unit.send(...)`` decides them all when the block ends and appends
their events in one transaction (``Repository.execute_together``), or none; the unit's
first event id is its one idempotency lookup (``processes.unit_of_work``).

Compensation: ``ctx.add_step(undo=...)`` or ``ctx.send(..., undo=...)`` record completed
steps with the ``@compensation`` method that undoes each. ``await ctx.compensate(reason)``
runs them in reverse order and ends the instance as ``compensated``; a handler that lets a
``DomainError`` (``compensate_on``) escape - a command refused - compensates the same way.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.aggregates.aggregate import Aggregate
from eventfold.aggregates.errors import DomainError
from eventfold.aggregates.repository import AggregateCommand, Repository
from eventfold.eventstore import instrumentation
from eventfold.eventstore.causation import caused_by
from eventfold.eventstore.dialect import Dialect
from eventfold.eventstore.errors import DuplicateEventId
from eventfold.eventstore.event import Event
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import AppendResult, RecordedEvent
from eventfold.eventstore.schema import deadlines, process_states
from eventfold.processes.deadlines import (
    Cancelled,
    Deadline,
    Scheduled,
    apply_changes,
    claim,
    deadline_id,
    read_deadline,
    utc,
)
from eventfold.processes.errors import (
    MissingCorrelationKey,
    ProcessBatchStale,
    ProcessDefinitionError,
    ProcessStateConflict,
)
from eventfold.processes.unit_of_work import SentCommand, UnitOfWork
from eventfold.projections import parking
from eventfold.projections.database import Database
from eventfold.projections.subscriber import BatchContext, Delivery, FailurePolicy

logger = logging.getLogger("eventfold.process")

S = TypeVar("S")
A = TypeVar("A", bound=Aggregate)
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[None]])

Status = Literal["active", "completed", "compensated"]
"""An instance is ``active`` until it completes or compensates; then it ignores events."""

KeySpec = str | Callable[[Any], object]
"""A field name of the event (or message), or a function of it, giving the instance key."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")
_ON = "__eventfold_on__"
_ON_TIMEOUT = "__eventfold_on_timeout__"
_COMPENSATION = "__eventfold_compensation__"
_COMMAND_IDS = uuid.UUID("5d1b8f0a-7c3e-4b59-8e0f-6a2d9c4b7e13")
"""Namespace of the ids of events appended by process managers' commands (uuid5)."""


@dataclass(frozen=True, slots=True)
class _On:
    event_classes: tuple[type[Event], ...]
    start: bool
    key: KeySpec | None


def on(
    *event_classes: type[Event], start: bool = False, key: KeySpec | None = None
) -> Callable[[HandlerT], HandlerT]:
    """Mark ``async def handler(self, event, ctx)`` as the handler of these event classes.

    ``start=True``: an event with a key no instance has yet starts one (otherwise such
    events are ignored). ``key`` overrides the class's ``key`` for these events: a field
    name or a function of the event.
    """
    if not event_classes or not all(
        isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
        for cls in event_classes
    ):
        raise ProcessDefinitionError(
            "@on takes one or more Event subclasses, e.g. @on(OrderPlaced)"
        )

    def mark(handler: HandlerT) -> HandlerT:
        setattr(handler, _ON, (*getattr(handler, _ON, ()), _On(event_classes, start, key)))
        return handler

    return mark


def on_timeout(*message_classes: type[BaseModel]) -> Callable[[HandlerT], HandlerT]:
    """Mark ``async def handler(self, message, ctx)`` as the handler of these timeout
    messages (pydantic models given to ``ctx.schedule``)."""
    if not message_classes or not all(
        isinstance(cls, type) and issubclass(cls, BaseModel) for cls in message_classes
    ):
        raise ProcessDefinitionError(
            "@on_timeout takes one or more pydantic model classes, e.g. @on_timeout(PaymentDue)"
        )

    def mark(handler: HandlerT) -> HandlerT:
        setattr(handler, _ON_TIMEOUT, (*getattr(handler, _ON_TIMEOUT, ()), *message_classes))
        return handler

    return mark


def compensation(method: HandlerT) -> HandlerT:
    """Mark ``async def undo(self, step, ctx)`` as a compensation: what undoes a step
    recorded with ``undo=self.undo`` (it usually sends a compensating command)."""
    is_async: bool = inspect.iscoroutinefunction(method)
    if not is_async:
        raise ProcessDefinitionError(
            f"@compensation marks an async method (async def {method.__name__}(self, step, ctx))"
        )
    setattr(method, _COMPENSATION, True)
    return method


def message_type(cls: type[BaseModel]) -> str:
    """The stored name of a timeout message class: an Event's type name, else the class name."""
    if issubclass(cls, Event):
        return cls.event_type
    return cls.__name__


@dataclass(frozen=True, slots=True)
class Step:
    """A completed step of an instance and the compensation that undoes it."""

    undo: str
    """The name of the ``@compensation`` method."""
    data: dict[str, Any] = field(default_factory=dict)
    """What the compensation needs to know (JSON-able), as given when it was recorded."""


@dataclass(frozen=True, slots=True)
class ProcessInstance(Generic[S]):
    """An instance of a process manager as stored."""

    manager: str
    key: str
    state: S
    status: Status
    steps: tuple[Step, ...]
    reason: str | None
    """Why it compensated."""
    version: int


@dataclass(slots=True)
class _Decision(Generic[S]):
    """A handled message's outcome, to write in the batch's (or firing's) transaction."""

    context: ProcessContext[S]
    version: int | None
    """The stored version it was decided on (None: a new instance)."""

    def stored(self) -> dict[str, Any]:
        ctx = self.context
        state: Any = ctx.state
        data = state.model_dump(mode="json") if isinstance(state, BaseModel) else dict(state)
        return {
            "data": data,
            "steps": [{"undo": step.undo, "data": step.data} for step in ctx.steps],
            "reason": ctx.reason,
        }

    def after(self) -> ProcessInstance[S]:
        """The instance as it will be stored (for the next event of a batch decided ahead)."""
        ctx = self.context
        manager = ctx.manager
        return manager._instance(
            ctx.key, self.stored(), ctx.status, 1 if self.version is None else self.version + 1
        )


class ProcessContext(Generic[S]):
    """What a handler gets besides its event: the instance and the means to act.

    ``state`` is the instance's state (mutate it, or assign a new value); ``record`` the
    handled event's envelope (None in a timeout handler, which has ``deadline``).
    """

    def __init__(
        self,
        manager: ProcessManager[S],
        store: EventStore,
        key: str,
        state: S,
        steps: list[Step],
        *,
        record: RecordedEvent | None,
        deadline: Deadline | None,
        cause_id: uuid.UUID,
        now: datetime,
        new: bool,
    ) -> None:
        self.manager = manager
        self.store = store
        self.key = key
        self.state = state
        self.record = record
        self.deadline = deadline
        self.status: Status = "active"
        self.reason: str | None = None
        self.new = new
        """Whether this handling started the instance."""
        self._steps = steps
        self._cause_id = cause_id
        self._now = now
        self._changes: list[Scheduled | Cancelled] = []
        self._commands = 0
        self._compensating = False
        self._may_append = True
        self._unit: UnitOfWork | None = None

    @property
    def steps(self) -> tuple[Step, ...]:
        """The completed steps still to undo if the instance compensates, oldest first."""
        return tuple(self._steps)

    @property
    def now(self) -> datetime:
        """The time this handling is about: the event's ``recorded_at``, or the deadline's
        due time. Timeouts are scheduled from it, so a re-run schedules the same time."""
        return self._now

    # -- commands ----------------------------------------------------------------------------

    async def send(
        self,
        aggregate: type[A],
        id: str,
        command: Callable[[A], object],
        *,
        undo: str | Callable[..., Awaitable[None]] | None = None,
        data: Mapping[str, Any] | None = None,
        retries: int = 3,
    ) -> AppendResult | None:
        """Run ``command`` on the aggregate (a new one if its stream is empty) and append
        what it records; on a concurrent change reload and retry up to ``retries`` times.

        ``undo`` records the step (with ``data``) for compensation once the command went
        through. A ``DomainError`` from the command propagates (and, unless the handler
        catches it, compensates the instance). Returns the append's result, or None when
        the command recorded nothing or an earlier attempt already appended its events.
        """
        if self._unit is not None:
            raise ProcessDefinitionError(
                "ctx.send inside a ctx.together() block would not land with the unit: "
                "send through the unit (unit.send(...))"
            )
        undo_name = self.manager._compensation_name(undo) if undo is not None else None
        [result] = await self._send_together(
            [SentCommand(aggregate, id, command, undo_name, dict(data or {}))], retries
        )
        return result

    @asynccontextmanager
    async def together(self, *, retries: int = 3) -> AsyncIterator[UnitOfWork]:
        """Send several commands as one unit of work: ``unit.send(...)`` in the block takes
        each down; when the block ends all of them run and their events are appended in
        one transaction (``Repository.execute_together``) - all or none.

        A conflict on any of the aggregates reloads every one and runs every command again
        (up to ``retries`` times). A ``DomainError`` from any command leaves all of them
        unwritten, records none of their steps, and propagates from the block (and, unless
        the handler catches it, compensates the instance). An exception raised in the
        block sends nothing. After a crash, one lookup of the unit's first event id tells
        whether the whole unit was appended already.
        """
        if self._unit is not None:
            raise ProcessDefinitionError("ctx.together() blocks do not nest: use one block")
        unit = UnitOfWork(self.manager._compensation_name)
        self._unit = unit
        try:
            yield unit
        finally:
            self._unit = None
        unit._sent(await self._send_together(list(unit.commands), retries))

    async def _send_together(
        self, commands: list[SentCommand], retries: int
    ) -> list[AppendResult | None]:
        """Run the commands and append their events in one transaction (one command: one
        stream's append), unless an earlier attempt did; record their steps."""
        if not commands:
            return []
        index = self._commands
        self._commands += 1
        streams = ", ".join(sent.aggregate.stream_id_for(sent.id) for sent in commands)
        results: list[AppendResult | None] = [None] * len(commands)
        # The unit's events are numbered over all its commands, and written all or none:
        # whether its first event is stored says whether the whole unit was.
        if await self.store.read_event(self._event_id(index, 0)):
            logger.info(
                "%s: command %d for %s while handling %s was already applied; not re-run",
                self.manager.name, index, streams, self._cause_id,
            )
        else:
            try:
                with self._cause():
                    done = await self.manager._repository(self.store).execute_together(
                        [AggregateCommand(sent.aggregate, sent.id, self._decider(sent.command))
                         for sent in commands],
                        retries=retries, metadata=self._metadata(), create=True,
                        event_ids=lambda n: self._event_id(index, n),
                    )
                results = [result for _, result in done]
            except DuplicateEventId:
                # The ids are this unit's own: another attempt appended them meanwhile.
                pass
        for sent in commands:
            if sent.undo is not None:
                self._steps.append(Step(sent.undo, sent.data))
        return results

    def _decider(self, command: Callable[[Any], object]) -> Callable[[Any], Awaitable[None]]:
        async def decide(target: Aggregate) -> None:
            outcome = command(target)
            if inspect.isawaitable(outcome):
                await outcome
            if target.pending_events and not self._may_append:
                # SQLite, inside the batch's write lock (a retried parked event, a stale
                # decision): appending would wait for ourselves. Roll back, decide ahead.
                raise ProcessBatchStale(
                    self.manager.name, self.key,
                    "a command must be appended outside the batch's transaction",
                )

        return decide

    def add_step(
        self,
        *,
        undo: str | Callable[..., Awaitable[None]],
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a completed step that was not a command of ours (the order the customer
        placed) with the compensation that undoes it."""
        self._steps.append(Step(self.manager._compensation_name(undo), dict(data or {})))

    # -- timeouts --------------------------------------------------------------------------

    def schedule(
        self,
        message: BaseModel,
        *,
        after: timedelta | None = None,
        at: datetime | None = None,
        name: str | None = None,
    ) -> uuid.UUID:
        """Schedule ``message`` for the instance's ``@on_timeout`` handler, ``after`` a
        while from ``now`` (the handled event's time) or ``at`` a time.

        ``name`` (default: the message's type name) identifies the deadline: scheduling a
        name again replaces the one still scheduled; ``cancel(name)`` cancels it. The row is
        written with the instance's state, in the batch's transaction. Returns its id.
        """
        if (after is None) == (at is None):
            raise ValueError("schedule(...) takes one of after=timedelta or at=datetime")
        cls = type(message)
        kind = message_type(cls)
        if kind not in self.manager._timeouts:
            raise ProcessDefinitionError(
                f"{type(self.manager).__qualname__} has no @on_timeout({cls.__qualname__}) "
                "handler: add one before scheduling this message"
            )
        if at is not None and at.tzinfo is None:
            raise ValueError("at= must be timezone-aware (e.g. datetime.now(UTC))")
        due = at if at is not None else self._now + cast(timedelta, after)
        label = name or kind
        id = deadline_id(self.manager.name, self.key, label, self._cause_id, len(self._changes))
        cause = {key: str(value) for key, value in self._cause_metadata().items()}
        self._changes.append(
            Scheduled(id, label, utc(due), kind, message.model_dump(mode="json"), cause)
        )
        return id

    def cancel(self, name: str | type[BaseModel]) -> None:
        """Cancel the instance's scheduled deadline(s) of this name (or message class): they
        never fire."""
        label = name if isinstance(name, str) else message_type(name)
        self._changes.append(Cancelled(label))

    # -- ending ------------------------------------------------------------------------------

    def complete(self) -> None:
        """End the instance: its scheduled deadlines are cancelled, later events ignored."""
        self.status = "completed"

    async def compensate(self, reason: str) -> None:
        """Undo the recorded steps, newest first, then end the instance as compensated.

        ``reason`` is stored with the instance and readable as ``ctx.reason`` by the
        compensations."""
        if self._compensating:
            return
        self._compensating = True
        self.reason = reason
        try:
            while self._steps:
                step = self._steps[-1]
                method = getattr(self.manager, step.undo)
                logger.info(
                    "%s %s: compensating with %s (%s)", self.manager.name, self.key,
                    step.undo, reason,
                )
                await method(step, self)
                self._steps.pop()
        finally:
            self._compensating = False
        self.status = "compensated"

    # -- internals -----------------------------------------------------------------------------

    def _event_id(self, command: int, n: int) -> uuid.UUID:
        return uuid.uuid5(
            _COMMAND_IDS, f"{self.manager.name}\x1f{self._cause_id}\x1f{command}\x1f{n}"
        )

    def _cause(self) -> AbstractContextManager[None]:
        return caused_by(self.record) if self.record is not None else nullcontext()

    def _metadata(self) -> dict[str, Any]:
        # Event handling stamps through caused_by; a timeout carries its scheduler's cause.
        if self.record is not None or self.deadline is None:
            return {}
        cause = self.deadline.cause
        metadata = {"causation_id": cause.get("event_id"),
                    "correlation_id": cause.get("correlation_id"),
                    "traceparent": cause.get("traceparent")}
        return {key: value for key, value in metadata.items() if value}

    def _cause_metadata(self) -> dict[str, str]:
        if self.record is not None:
            record = self.record
            cause = {"event_id": str(record.event_id),
                     "correlation_id": str(record.metadata.get("correlation_id")
                                           or record.event_id)}
            traceparent = record.metadata.get("traceparent")
            if traceparent:
                cause["traceparent"] = str(traceparent)
            return cause
        return dict(self.deadline.cause) if self.deadline is not None else {}


class ProcessManager(Generic[S]):
    """Base class of process managers: subclass, name it, give the key, write handlers.

    Class attributes: ``name`` (stable: state, deadlines and the checkpoint are stored
    under it), ``key`` (the field of handled events and timeout messages naming the
    instance), ``state_type`` (a pydantic model with defaults, or ``dict``), ``failure``
    (a ``FailurePolicy``), ``compensate_on`` (exceptions escaping a handler that
    compensate the instance instead of failing the event).

    Pass instances to the runner (or ``App(subscribers=[...])``) and to a
    ``DeadlinePoller`` when they schedule timeouts. Commands load and save aggregates
    through an ``aggregates.Repository`` (see ``use_repository``).
    """

    name: ClassVar[str]
    key: ClassVar[KeySpec]
    state_type: ClassVar[type[Any]] = dict
    failure: ClassVar[FailurePolicy] = FailurePolicy()
    compensate_on: ClassVar[tuple[type[BaseException], ...]] = (DomainError,)

    _handlers: ClassVar[dict[str, tuple[str, _On]]]
    _timeouts: ClassVar[dict[str, tuple[type[BaseModel], str]]]
    _compensations: ClassVar[frozenset[str]]
    _turns: weakref.WeakKeyDictionary[sa.Engine, asyncio.Lock]
    _decided: dict[uuid.UUID, _Decision[S] | BaseException]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, tuple[str, _On]] = {}
        timeouts: dict[str, tuple[type[BaseModel], str]] = {}
        compensations: set[str] = set()
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                for spec in getattr(value, _ON, ()):
                    for event_cls in spec.event_classes:
                        handlers[event_cls.event_type] = (attr, spec)
                for message_cls in getattr(value, _ON_TIMEOUT, ()):
                    timeouts[message_type(message_cls)] = (message_cls, attr)
                if getattr(value, _COMPENSATION, False):
                    compensations.add(attr)
        cls._handlers = handlers
        cls._timeouts = timeouts
        cls._compensations = frozenset(compensations)

    def __init__(self) -> None:
        cls = type(self)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            raise ProcessDefinitionError(
                f"{cls.__qualname__}.name must be a stable name of letters, digits, '_', "
                f"'.' or '-' starting with a letter (got {name!r})"
            )
        if not cls._handlers:
            raise ProcessDefinitionError(
                f"{cls.__qualname__} handles no event: mark handlers with @on(EventClass)"
            )
        if not any(spec.start for _, spec in cls._handlers.values()):
            raise ProcessDefinitionError(
                f"{cls.__qualname__} has no starting handler: mark the handler of the "
                "first event with @on(EventClass, start=True)"
            )
        if getattr(cls, "key", None) is None and any(
            spec.key is None for _, spec in cls._handlers.values()
        ):
            raise ProcessDefinitionError(
                f"{cls.__qualname__}.key is not set: name the field of the events that "
                "says which instance they belong to (key = 'order_id')"
            )
        state_type = cls.state_type
        if state_type is not dict and not (
            isinstance(state_type, type) and issubclass(state_type, BaseModel)
        ):
            raise ProcessDefinitionError(
                f"{cls.__qualname__}.state_type must be dict or a pydantic model class"
            )
        self._turns = weakref.WeakKeyDictionary()
        self._repositories: weakref.WeakKeyDictionary[EventStore, Repository] = (
            weakref.WeakKeyDictionary()
        )
        self._decided = {}

    # -- the Subscriber interface ----------------------------------------------------------

    @property
    def event_types(self) -> frozenset[str] | None:
        """The stored type names of the events the manager has handlers for."""
        return frozenset(self._handlers)

    async def prepare(self, connection: AsyncConnection) -> None:
        """Create the state and deadline tables where no migration did (the memory
        store's private database); on migrated databases this changes nothing."""
        await connection.run_sync(
            lambda sync: process_states.metadata.create_all(
                sync, tables=[process_states, deadlines], checkfirst=True
            )
        )

    @asynccontextmanager
    async def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AsyncIterator[None]:
        """What the runner wraps each batch's transaction in (commit included).

        The manager's turn (shared with the deadline poller of this process) keeps a
        timeout from firing in the middle of a batch. On SQLite the batch's transaction
        holds the database's one write lock, so commands could not be appended from inside
        it: there the handlers run here, before it, and ``handle_batch`` only writes what
        they decided (PostgreSQL runs them inside the transaction, under row locks). The
        same holds when the read models live apart from the store: a transaction there
        never waits on the store's database.
        """
        async with self.turn(engine):
            self._decided = {}
            try:
                db = Database(engine)
                if db.waits_outside(store):
                    await self._decide_ahead(records, store, db)
                yield
            finally:
                self._decided = {}

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        """Handle events in order: load the instance, run the handler, save it."""
        if context.replaying:
            # A rebuild replays history: the commands were sent and the timeouts scheduled
            # when the events were first handled.
            return
        store = context.store
        if store is None:
            raise ProcessDefinitionError(
                f"process manager {self.name!r} needs the event store: run it with a "
                "projections.Runner"
            )
        conn = context.connection
        # Where writes are serial the batch's transaction holds the database, and a store
        # apart is not waited on from inside it: commands were decided (and appended)
        # ahead of it, in around_batch.
        serial = Database(conn.engine).waits_outside(store)
        for delivery in batch:
            record = delivery.record
            decided = self._decided.get(record.event_id)
            if isinstance(decided, BaseException):
                # Raised once as decided; a retry decides again, inside the transaction.
                del self._decided[record.event_id]
                raise decided
            if decided is not None:
                await self._save(conn, decided, stale_is_retry=True)
                continue
            ahead = self._handling(delivery.event, record)
            if ahead is None:
                continue
            key, start, handler = ahead
            with instrumentation.handling(self.name, record):
                decision = await self._decide(
                    conn, store, key, start, handler, delivery.event, record=record,
                    deadline=None, cause_id=record.event_id, now=utc(record.recorded_at),
                    lock=True, may_append=not serial, overlay=None,
                )
            if decision is not None:
                await self._save(conn, decision, stale_is_retry=serial)

    # -- timeouts (the DeadlinePoller calls this) ------------------------------------------

    async def fire_deadline(
        self, db: Database, store: EventStore, id: uuid.UUID, key: str
    ) -> bool:
        """Fire one due deadline: claim it, run its timeout handler, save the instance, mark
        it fired - once in effect. Returns False when it was no longer scheduled."""
        async with self.turn(db.engine):
            if not db.waits_outside(store):
                async with db.transaction() as conn:
                    deadline = await claim(conn, self.name, id, key)
                    if deadline is None:
                        return False
                    decision = await self._decide_timeout(conn, store, deadline, lock=False)
                    if decision is not None:
                        await self._save(conn, decision, stale_is_retry=False)
                return True
            # Serial writes (SQLite), or a store apart: decide (and append) before the write
            # transaction; the turn keeps this process's batches out meanwhile, the claim
            # other pollers.
            async with db.reading(autocommit=True) as conn:
                deadline = await read_deadline(conn, id)
                if deadline is None or deadline.status != "scheduled":
                    return False
                decision = await self._decide_timeout(conn, store, deadline, lock=False)
            async with db.transaction() as conn:
                if await claim(conn, self.name, id, key) is None:
                    return False
                if decision is not None:
                    await self._save(conn, decision, stale_is_retry=False)
            return True

    def use_repository(self, repository: Repository) -> None:
        """Send commands to aggregates of the repository's store through it, so they load
        from its snapshots; without one they fold every event. ``App.connect`` gives its
        process managers the application's repository."""
        self._repositories[repository.store] = repository

    def _repository(self, store: EventStore) -> Repository:
        repository = self._repositories.get(store)
        if repository is None:
            repository = self._repositories[store] = Repository(store)
        return repository

    def turn(self, engine: AsyncEngine) -> asyncio.Lock:
        """The lock batches and deadline firings of this manager take turns on (per
        database, in this process)."""
        return self._turns.setdefault(engine.sync_engine, asyncio.Lock())

    # -- reading instances -------------------------------------------------------------------

    async def instance(self, engine: AsyncEngine, key: str) -> ProcessInstance[S] | None:
        """The stored instance of ``key``, or None."""
        async with Database(engine).reading() as conn:
            return await self._load(conn, key, lock=False)

    # -- internals -----------------------------------------------------------------------------

    def _compensation_name(self, undo: str | Callable[..., Awaitable[None]]) -> str:
        name = undo if isinstance(undo, str) else getattr(undo, "__name__", repr(undo))
        if name not in self._compensations:
            raise ProcessDefinitionError(
                f"{type(self).__qualname__}.{name} is not a compensation: mark the method "
                "that undoes the step with @compensation"
            )
        return name

    def _key(self, message: BaseModel, spec: KeySpec | None, what: str) -> str:
        spec = spec if spec is not None else type(self).key
        if callable(spec):
            return str(spec(message))
        value = getattr(message, spec, None)
        if value is None:
            raise MissingCorrelationKey(self.name, what, spec)
        return str(value)

    def _handling(
        self, event: Event, record: RecordedEvent
    ) -> tuple[str, bool, Callable[[Any, ProcessContext[S]], Awaitable[None]]] | None:
        entry = self._handlers.get(record.event_type)
        if entry is None:
            return None
        attr, spec = entry
        return self._key(event, spec.key, record.event_type), spec.start, getattr(self, attr)

    async def _decide_ahead(
        self, records: Sequence[RecordedEvent], store: EventStore, db: Database
    ) -> None:
        overlay: dict[str, ProcessInstance[S]] = {}
        # Commands are appended between these reads: no transaction may stay open here.
        async with db.reading(autocommit=True) as conn:
            blocked = await parking.blocked_streams(conn, self.name)
            for record in records:
                if record.event_type not in self._handlers or record.stream_id in blocked:
                    continue  # the runner parks it behind its stream's parked event
                try:
                    event = store.registry.decode(record)
                except Exception:
                    continue  # undecodable: the runner parks it
                try:
                    ahead = self._handling(event, record)
                    if ahead is None:
                        continue
                    key, start, handler = ahead
                    with instrumentation.handling(self.name, record):
                        decision = await self._decide(
                            conn, store, key, start, handler, event, record=record,
                            deadline=None, cause_id=record.event_id,
                            now=utc(record.recorded_at), lock=False, may_append=True,
                            overlay=overlay,
                        )
                except Exception as exc:
                    # Raised again from handle_batch: the runner retries, then parks it.
                    self._decided[record.event_id] = exc
                    continue
                if decision is not None:
                    self._decided[record.event_id] = decision
                    overlay[decision.context.key] = decision.after()

    async def _decide_timeout(
        self, conn: AsyncConnection, store: EventStore, deadline: Deadline, *, lock: bool
    ) -> _Decision[S] | None:
        entry = self._timeouts.get(deadline.message_type)
        if entry is None:
            raise ProcessDefinitionError(
                f"{type(self).__qualname__} has no @on_timeout handler for "
                f"{deadline.message_type!r} (deadline {deadline.name!r} of {deadline.key!r}): "
                "add it back, or cancel the deadline"
            )
        message_cls, attr = entry
        message = message_cls.model_validate(deadline.message)
        return await self._decide(
            conn, store, deadline.key, False, getattr(self, attr), message, record=None,
            deadline=deadline, cause_id=deadline.id, now=deadline.due_at, lock=lock,
            may_append=True, overlay=None,
        )

    async def _decide(
        self,
        conn: AsyncConnection,
        store: EventStore,
        key: str,
        start: bool,
        handler: Callable[[Any, ProcessContext[S]], Awaitable[None]],
        message: BaseModel,
        *,
        record: RecordedEvent | None,
        deadline: Deadline | None,
        cause_id: uuid.UUID,
        now: datetime,
        lock: bool,
        may_append: bool,
        overlay: dict[str, ProcessInstance[S]] | None,
    ) -> _Decision[S] | None:
        """Run the handler on the instance; what to save, or None (nothing to do)."""
        if overlay is not None and key in overlay:
            instance: ProcessInstance[S] | None = overlay[key]
        else:
            instance = await self._load(conn, key, lock=lock)
        if instance is None and not start:
            logger.debug("%s: no instance %r for %s; ignored", self.name, key, cause_id)
            return None
        if instance is not None and instance.status != "active":
            logger.debug("%s: instance %r is %s; %s ignored", self.name, key,
                         instance.status, cause_id)
            return None
        state: S = instance.state if instance is not None else self._new_state()
        steps = list(instance.steps) if instance is not None else []
        ctx = ProcessContext(
            self, store, key, state, steps, record=record, deadline=deadline,
            cause_id=cause_id, now=now, new=instance is None,
        )
        ctx._may_append = may_append
        try:
            await handler(message, ctx)
        except self.compensate_on as exc:
            if ctx.status != "active":
                raise
            detail = str(exc).strip().splitlines()
            await ctx.compensate(
                f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
            )
        return _Decision(ctx, None if instance is None else instance.version)

    def _new_state(self) -> S:
        return cast(S, {} if self.state_type is dict else self.state_type())

    def _instance(
        self, key: str, stored: Mapping[str, Any], status: str, version: int
    ) -> ProcessInstance[S]:
        data = stored.get("data", {})
        state = cast(S, dict(data) if self.state_type is dict
                     else self.state_type.model_validate(data))
        steps = tuple(Step(step["undo"], step.get("data", {})) for step in stored.get("steps", ()))
        return ProcessInstance(
            self.name, key, state, cast(Status, status), steps, stored.get("reason"), version
        )

    async def _load(
        self, conn: AsyncConnection, key: str, *, lock: bool
    ) -> ProcessInstance[S] | None:
        query = sa.select(
            process_states.c.state, process_states.c.status, process_states.c.version
        ).where(process_states.c.manager == self.name, process_states.c.key == key)
        if lock:
            # Held until the batch commits: the deadline poller waits for it (same order).
            query = Dialect.of(conn).locked(query)
        row = (await conn.execute(query)).first()
        if row is None:
            return None
        return self._instance(key, row[0], row[1], int(row[2]))

    async def _save(
        self, conn: AsyncConnection, decision: _Decision[S], *, stale_is_retry: bool
    ) -> None:
        ctx, version = decision.context, decision.version
        stored = decision.stored()
        if version is None:
            exists = (await conn.execute(
                sa.select(process_states.c.version)
                .where(process_states.c.manager == self.name, process_states.c.key == ctx.key)
            )).first()
            if exists is not None:
                self._stale(ctx.key, "was started meanwhile", stale_is_retry, 0)
            await conn.execute(process_states.insert().values(
                manager=self.name, key=ctx.key, state=stored, version=1, status=ctx.status,
                updated_at=sa.func.now(),
            ))
        else:
            result = await conn.execute(
                process_states.update()
                .where(process_states.c.manager == self.name, process_states.c.key == ctx.key,
                       process_states.c.version == version)
                .values(state=stored, version=version + 1, status=ctx.status,
                        updated_at=sa.func.now())
            )
            if result.rowcount != 1:
                self._stale(
                    ctx.key, f"is no longer at version {version}", stale_is_retry, version
                )
        await apply_changes(
            conn, self.name, ctx.key, ctx._changes, cancel_all=ctx.status != "active"
        )

    def _stale(self, key: str, detail: str, retry: bool, version: int) -> None:
        if retry:
            raise ProcessBatchStale(self.name, key, f"the stored state {detail}")
        raise ProcessStateConflict(self.name, key, version)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.name!r}>"


__all__ = [
    "KeySpec",
    "ProcessContext",
    "ProcessInstance",
    "ProcessManager",
    "Status",
    "Step",
    "compensation",
    "message_type",
    "on",
    "on_timeout",
]
