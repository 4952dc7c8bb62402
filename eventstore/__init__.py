"""The event store: events, envelopes, the type registry, and the EventStore port."""

from eventfold.eventstore.connect import DEFAULT_URL, connect, masked
from eventfold.eventstore.errors import (
    CloudEventError,
    ConcurrencyError,
    DuplicateEventId,
    DuplicateEventType,
    EventDecodeError,
    EventfoldError,
    EventTypeError,
    InvalidAppend,
    SchemaNotMigrated,
    StoreUnavailable,
    TransactionHorizonError,
    UnknownEventType,
    UnregisteredEvent,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.ids import keyed_event_ids, new_event_id
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

__all__ = [
    "ANY",
    "DEFAULT_URL",
    "NO_STREAM",
    "START",
    "STREAM_EXISTS",
    "AppendResult",
    "CloudEventError",
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
    "keyed_event_ids",
    "masked",
    "new_event_id",
]
