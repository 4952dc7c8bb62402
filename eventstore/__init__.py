"""The event store: events, envelopes, the type registry, and the EventStore port."""

from eventfold.eventstore.connect import DEFAULT_URL, connect
from eventfold.eventstore.errors import (
    CloudEventError,
    ConcurrencyError,
    DatabaseMissing,
    DuplicateEventId,
    DuplicateEventType,
    EventDecodeError,
    EventfoldError,
    EventTypeError,
    InvalidAppend,
    InvalidDatabaseURL,
    SchemaNotMigrated,
    StoreUnavailable,
    TransactionHorizonError,
    UnknownEventType,
    UnregisteredEvent,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.ids import new_event_id
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    GlobalPosition,
    NewEvent,
    RecordedEvent,
    StreamInfo,
    StreamState,
    category_of,
)
from eventfold.eventstore.registry import EventRegistry, StoredShape, Upcaster
from eventfold.eventstore.urls import masked

__all__ = [
    "ANY",
    "DEFAULT_URL",
    "NO_STREAM",
    "START",
    "STREAM_EXISTS",
    "AppendResult",
    "CloudEventError",
    "ConcurrencyError",
    "DatabaseMissing",
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
    "InvalidDatabaseURL",
    "NewEvent",
    "RecordedEvent",
    "SchemaNotMigrated",
    "StoreUnavailable",
    "StoredShape",
    "StreamInfo",
    "StreamState",
    "TransactionHorizonError",
    "UnknownEventType",
    "UnregisteredEvent",
    "Upcaster",
    "category_of",
    "connect",
    "masked",
    "new_event_id",
]
