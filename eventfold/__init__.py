"""eventfold: event sourcing with CQRS projections for Python, asyncio first.

Everything a user needs is importable from here::

    from eventfold import Event, EventRegistry, connect, NO_STREAM, ConcurrencyError
"""

from eventfold.config import Settings
from eventfold.errors import StreamNotFound
from eventfold.tail import tail
from eventstore import (
    ANY,
    DEFAULT_URL,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    DuplicateEventId,
    DuplicateEventType,
    Event,
    EventDecodeError,
    EventfoldError,
    EventRegistry,
    EventStore,
    EventTypeError,
    ExpectedVersion,
    GlobalPosition,
    InvalidAppend,
    NewEvent,
    RecordedEvent,
    SchemaNotMigrated,
    StoreUnavailable,
    StreamInfo,
    StreamState,
    TransactionHorizonError,
    UnknownEventType,
    UnregisteredEvent,
    category_of,
    connect,
    new_event_id,
)
from eventstore.causation import caused_by, correlated
from eventstore.migrate import SCHEMA_HEAD, migrate, schema_revision

__all__ = [
    "ANY",
    "DEFAULT_URL",
    "NO_STREAM",
    "SCHEMA_HEAD",
    "START",
    "STREAM_EXISTS",
    "AppendResult",
    "ConcurrencyError",
    "DuplicateEventId",
    "DuplicateEventType",
    "Event",
    "EventDecodeError",
    "EventRegistry",
    "EventStore",
    "EventTypeError",
    "EventfoldError",
    "ExpectedVersion",
    "GlobalPosition",
    "InvalidAppend",
    "NewEvent",
    "RecordedEvent",
    "SchemaNotMigrated",
    "Settings",
    "StoreUnavailable",
    "StreamInfo",
    "StreamNotFound",
    "StreamState",
    "TransactionHorizonError",
    "UnknownEventType",
    "UnregisteredEvent",
    "category_of",
    "caused_by",
    "connect",
    "correlated",
    "migrate",
    "new_event_id",
    "schema_revision",
    "tail",
]
