"""What goes into the store and what comes out: new events, recorded events, positions."""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from eventfold.eventstore.event import Event
from eventfold.eventstore.ids import new_event_id


class StreamState(enum.Enum):
    """Expected-version conditions that are not an exact version."""

    NO_STREAM = "no stream"
    STREAM_EXISTS = "stream exists"
    ANY = "any"

    def __repr__(self) -> str:
        return self.name


NO_STREAM = StreamState.NO_STREAM
"""Append only if the stream has no events yet."""
STREAM_EXISTS = StreamState.STREAM_EXISTS
"""Append only if the stream has at least one event."""
ANY = StreamState.ANY
"""Append whatever the stream's version."""

ExpectedVersion = int | StreamState
"""An exact version (0 = no events yet), or one of NO_STREAM, STREAM_EXISTS, ANY."""


class GlobalPosition(NamedTuple):
    """A place in the global log, ordered by (transaction_id, position).

    On PostgreSQL ``transaction_id`` is the writer's xid8, which is what lets a reader
    never pass over an event that commits late with a smaller position; on other
    backends writes are serialized and ``transaction_id`` just grows with every append.
    """

    transaction_id: int
    position: int


START = GlobalPosition(0, 0)
"""The position before the first event of the global log."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended, with the id that makes re-appending it idempotent."""

    event: Event
    event_id: uuid.UUID = field(default_factory=new_event_id)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, init=False)
class RecordedEvent:
    """An event as the store holds it: the envelope and the JSON data.

    Data is already upcast to the current schema version of its type when the store's
    registry has upcasters; ``registry.decode(record)`` turns it into the typed event.

    ``corrupt`` is set, saying why, when the row's stored JSON cannot be read: ``data`` and
    ``metadata`` are empty then, and ``registry.decode`` raises ``EventDecodeError``. The
    read still returns every other row of the batch as stored (see ``EventDecodeError``).
    """

    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    transaction_id: int
    position: int
    event_type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    corrupt: str | None = None

    def __init__(
        self,
        event_id: uuid.UUID,
        stream_id: str,
        stream_version: int,
        transaction_id: int,
        position: int,
        event_type: str,
        schema_version: int,
        data: dict[str, Any],
        metadata: dict[str, Any],
        recorded_at: datetime,
        corrupt: str | None = None,
    ) -> None:
        # Reads build one of these per event (two when upcast). The frozen dataclass's own
        # __init__ sets each field through object.__setattr__; the slots' setters cost half
        # as much, and the instance stays frozen.
        _set_event_id(self, event_id)
        _set_stream_id(self, stream_id)
        _set_stream_version(self, stream_version)
        _set_transaction_id(self, transaction_id)
        _set_position(self, position)
        _set_event_type(self, event_type)
        _set_schema_version(self, schema_version)
        _set_data(self, data)
        _set_metadata(self, metadata)
        _set_recorded_at(self, recorded_at)
        _set_corrupt(self, corrupt)

    @property
    def global_position(self) -> GlobalPosition:
        """Where the event lies in the global log."""
        return GlobalPosition(self.transaction_id, self.position)

    @property
    def category(self) -> str:
        """The stream's category: ``Order`` for ``Order-123``."""
        return category_of(self.stream_id)


def _slot_setter(name: str) -> Callable[[RecordedEvent, Any], None]:
    setter: Callable[[RecordedEvent, Any], None] = RecordedEvent.__dict__[name].__set__
    return setter


_set_event_id = _slot_setter("event_id")
_set_stream_id = _slot_setter("stream_id")
_set_stream_version = _slot_setter("stream_version")
_set_transaction_id = _slot_setter("transaction_id")
_set_position = _slot_setter("position")
_set_event_type = _slot_setter("event_type")
_set_schema_version = _slot_setter("schema_version")
_set_data = _slot_setter("data")
_set_metadata = _slot_setter("metadata")
_set_recorded_at = _slot_setter("recorded_at")
_set_corrupt = _slot_setter("corrupt")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote: the stream's new version and where the batch lies."""

    stream_id: str
    version: int
    first_position: int
    last_position: int
    transaction_id: int

    @property
    def global_position(self) -> GlobalPosition:
        """The position of the batch's last event."""
        return GlobalPosition(self.transaction_id, self.last_position)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of ``EventStore.append_streams``: its events and the version
    it must be at (as ``append``'s ``expected_version``)."""

    stream_id: str
    events: Sequence[NewEvent | Event]
    expected_version: ExpectedVersion = ANY


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream's id, version and the time of its last append."""

    stream_id: str
    version: int
    updated_at: datetime

    @property
    def category(self) -> str:
        """The stream's category."""
        return category_of(self.stream_id)


def category_of(stream_id: str) -> str:
    """The part of a stream id before the first ``-`` (the whole id if there is none)."""
    head, _, _ = stream_id.partition("-")
    return head


@dataclass(frozen=True, slots=True)
class HorizonHolder:
    """A session whose open transaction holds the readers' horizon back (PostgreSQL)."""

    pid: int
    application_name: str
    state: str
    transaction_age: timedelta
    query: str


def partition_of(key: str, count: int) -> int:
    """The partition (0 to ``count - 1``) of a key, the same in every process and machine:
    the first four bytes of its MD5, big-endian, modulo ``count``. PostgreSQL computes the
    same in SQL, so a store can return one partition's events (``read_all(partition=...)``).
    """
    digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % count
