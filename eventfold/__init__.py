"""eventfold: event sourcing with CQRS projections for Python, asyncio first.

The everyday names are importable from here::

    from eventfold import Aggregate, App, Event, Projection, Repository, applies, handles

- the store: ``Event``, ``EventRegistry``, ``connect``, ``migrate``, ``EventStore``,
  ``NewEvent``, ``RecordedEvent``, ``PersonalData`` (fields forgotten with their
  subject), the expected versions ``NO_STREAM``, ``STREAM_EXISTS``,
  ``ANY``, the log's ``START``, the store's own events ``StreamDeleted`` and
  ``StreamTruncated``, and the errors an application catches;
- the write model: ``Aggregate``, ``applies``, ``Repository``, ``DomainError``, ``scenario``;
- schema evolution and snapshots: ``Upcasters``, ``open_snapshots``;
- read models: ``Projection``, ``handles``, ``ProjectionContext``, ``ReadModel``,
  ``Delivery``, ``FailurePolicy``, ``Runner``;
- process managers: ``ProcessManager``, ``ProcessContext``, ``on``, ``on_timeout``,
  ``compensation``; messaging: ``Relay``, ``Inbox``;
- the application: ``App`` (what ``eventfold --app module:attribute`` loads), ``Running``,
  and its ``Retention`` policies.

Everything else lives in the package that owns it: ``eventfold.eventstore``,
``eventfold.upcasters``, ``eventfold.snapshots``, ``eventfold.aggregates``,
``eventfold.projections``, ``eventfold.processes``, ``eventfold.messaging`` (its broker
adapters ``eventfold.messaging.rabbitmq`` and ``eventfold.messaging.nats`` need extras), and
observability in ``eventfold.projections.observability``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        PersonalData,
        RecordedEvent,
        Retention,
        SchemaNotMigrated,
        StoreUnavailable,
        StreamDeleted,
        StreamTombstoned,
        StreamTruncated,
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
    "PersonalData",
    "ProcessContext",
    "ProcessManager",
    "Projection",
    "ProjectionContext",
    "ReadModel",
    "RecordedEvent",
    "Relay",
    "Repository",
    "Retention",
    "Runner",
    "Running",
    "SchemaNotMigrated",
    "StoreUnavailable",
    "StreamDeleted",
    "StreamTombstoned",
    "StreamTruncated",
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

# Where each everyday name lives: it is imported from there on first use (PEP 562), so
# ``import eventfold`` costs nothing until a name is used, and using one loads only its
# package (and what that package needs).
_HOMES: dict[str, str] = {
    "Aggregate": "eventfold.aggregates",
    "AggregateNotFound": "eventfold.aggregates",
    "DomainError": "eventfold.aggregates",
    "Repository": "eventfold.aggregates",
    "applies": "eventfold.aggregates",
    "scenario": "eventfold.aggregates",
    "App": "eventfold.app",
    "Running": "eventfold.app",
    "ANY": "eventfold.eventstore",
    "ConcurrencyError": "eventfold.eventstore",
    "DuplicateEventId": "eventfold.eventstore",
    "Event": "eventfold.eventstore",
    "EventRegistry": "eventfold.eventstore",
    "EventStore": "eventfold.eventstore",
    "EventfoldError": "eventfold.eventstore",
    "InvalidAppend": "eventfold.eventstore",
    "NO_STREAM": "eventfold.eventstore",
    "NewEvent": "eventfold.eventstore",
    "PersonalData": "eventfold.eventstore",
    "RecordedEvent": "eventfold.eventstore",
    "Retention": "eventfold.eventstore",
    "START": "eventfold.eventstore",
    "STREAM_EXISTS": "eventfold.eventstore",
    "SchemaNotMigrated": "eventfold.eventstore",
    "StoreUnavailable": "eventfold.eventstore",
    "StreamDeleted": "eventfold.eventstore",
    "StreamTombstoned": "eventfold.eventstore",
    "StreamTruncated": "eventfold.eventstore",
    "UnknownEventType": "eventfold.eventstore",
    "connect": "eventfold.eventstore",
    "migrate": "eventfold.eventstore.migrate",
    "Inbox": "eventfold.messaging",
    "Relay": "eventfold.messaging",
    "ProcessContext": "eventfold.processes",
    "ProcessManager": "eventfold.processes",
    "compensation": "eventfold.processes",
    "on": "eventfold.processes",
    "on_timeout": "eventfold.processes",
    "Delivery": "eventfold.projections",
    "FailurePolicy": "eventfold.projections",
    "Projection": "eventfold.projections",
    "ProjectionContext": "eventfold.projections",
    "ReadModel": "eventfold.projections",
    "Runner": "eventfold.projections",
    "handles": "eventfold.projections",
    "open_snapshots": "eventfold.snapshots",
    "Upcasters": "eventfold.upcasters",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'eventfold' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
