"""eventfold: event sourcing with CQRS projections for Python, asyncio first.

The everyday names are importable from here::

    from eventfold import Aggregate, App, Event, Projection, Repository, applies, handles

- the store: ``Event``, ``EventRegistry``, ``connect``, ``migrate``, ``EventStore``,
  ``NewEvent``, ``RecordedEvent``, the expected versions ``NO_STREAM``, ``STREAM_EXISTS``,
  ``ANY``, the log's ``START``, and the errors an application catches;
- the write model: ``Aggregate``, ``applies``, ``Repository``, ``DomainError``, ``scenario``;
- schema evolution and snapshots: ``Upcasters``, ``open_snapshots``;
- read models: ``Projection``, ``handles``, ``ProjectionContext``, ``ReadModel``,
  ``Delivery``, ``FailurePolicy``, ``Runner``;
- process managers: ``ProcessManager``, ``ProcessContext``, ``on``, ``on_timeout``,
  ``compensation``; messaging: ``Relay``, ``Inbox``;
- the application: ``App`` (what ``eventfold --app module:attribute`` loads), ``Running``.

Everything else lives in the package that owns it: ``eventfold.eventstore``,
``eventfold.upcasters``, ``eventfold.snapshots``, ``eventfold.aggregates``,
``eventfold.projections``, ``eventfold.processes``, ``eventfold.messaging`` (its broker
adapters ``eventfold.messaging.rabbitmq`` and ``eventfold.messaging.nats`` need extras), and
observability in ``eventfold.projections.observability``.
"""

from eventfold.aggregates import (
    Aggregate,
    AggregateNotFound,
    DomainError,
    Repository,
    applies,
    scenario,
)
from eventfold.app import App, Running
from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    ConcurrencyError,
    DuplicateEventId,
    Event,
    EventfoldError,
    EventRegistry,
    EventStore,
    InvalidAppend,
    NewEvent,
    RecordedEvent,
    SchemaNotMigrated,
    StoreUnavailable,
    UnknownEventType,
    connect,
)
from eventfold.eventstore.migrate import migrate
from eventfold.messaging import Inbox, Relay
from eventfold.processes import ProcessContext, ProcessManager, compensation, on, on_timeout
from eventfold.projections import (
    Delivery,
    FailurePolicy,
    Projection,
    ProjectionContext,
    ReadModel,
    Runner,
    handles,
)
from eventfold.snapshots import open_snapshots
from eventfold.upcasters import Upcasters

__all__ = [
    "ANY",
    "NO_STREAM",
    "START",
    "STREAM_EXISTS",
    "Aggregate",
    "AggregateNotFound",
    "App",
    "ConcurrencyError",
    "Delivery",
    "DomainError",
    "DuplicateEventId",
    "Event",
    "EventRegistry",
    "EventStore",
    "EventfoldError",
    "FailurePolicy",
    "Inbox",
    "InvalidAppend",
    "NewEvent",
    "ProcessContext",
    "ProcessManager",
    "Projection",
    "ProjectionContext",
    "ReadModel",
    "RecordedEvent",
    "Relay",
    "Repository",
    "Runner",
    "Running",
    "SchemaNotMigrated",
    "StoreUnavailable",
    "UnknownEventType",
    "Upcasters",
    "applies",
    "compensation",
    "connect",
    "handles",
    "migrate",
    "on",
    "on_timeout",
    "open_snapshots",
    "scenario",
]
