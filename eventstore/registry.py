"""The event registry: stable type names and versions to classes, encoding and decoding."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

import pydantic

from eventfold.eventstore.errors import (
    DuplicateEventType,
    EventDecodeError,
    UnknownEventType,
    UnregisteredEvent,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.personal import personal_fields
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.system_events import SYSTEM_EVENTS, SYSTEM_PREFIX

E = TypeVar("E", bound=type[Event])

StoredShape = tuple[str, int, dict[str, Any]]
"""An event as stored JSON: (event_type, schema_version, data)."""


class Upcaster(Protocol):
    """Carries stored JSON of old versions forward (implemented by ``upcasters``)."""

    def upcast(
        self, event_type: str, schema_version: int, data: dict[str, Any]
    ) -> list[StoredShape]:
        """The current-version shapes for one stored event (several for a split)."""
        ...

    def stored_types_of(self, event_types: Iterable[str]) -> set[str]:
        """The stored type names that may read as one of ``event_types`` (themselves too)."""
        ...


@runtime_checkable
class FreshUpcaster(Upcaster, Protocol):
    """An upcaster that can skip copying data its caller owns alone (``Upcasters``)."""

    def upcast_fresh(
        self, event_type: str, schema_version: int, data: dict[str, Any]
    ) -> list[StoredShape]:
        """``upcast`` of data no one else holds (just parsed): steps may take it as is."""
        ...


class EventRegistry:
    """Maps stable event type names and schema versions to event classes.

    Registration is explicit: build a registry, register your events, hand it to the
    store. Every read path of the store applies the registry's upcaster, so readers see
    events at their current version. The store's own events (``StreamDeleted``,
    ``StreamTruncated``) are known to every registry; iterating it lists only the
    application's.
    """

    def __init__(self, events: Iterable[type[Event]] = (), *, upcaster: Upcaster | None = None):
        self._classes: dict[tuple[str, int], type[Event]] = {}
        self._current: dict[str, int] = {}
        self.upcaster = upcaster
        for system in SYSTEM_EVENTS:
            self._classes[(system.event_type, system.schema_version)] = system
            self._current[system.event_type] = system.schema_version
        for cls in events:
            self.register(cls)

    def register(self, cls: E) -> E:
        """Register an event class; usable as a decorator. Re-registering it is a no-op."""
        if not (isinstance(cls, type) and issubclass(cls, Event)) or cls is Event:
            raise TypeError(f"{cls!r} is not a subclass of eventfold's Event")
        key = (cls.event_type, cls.schema_version)
        existing = self._classes.get(key)
        if existing is cls:
            return cls
        if existing is not None:
            raise DuplicateEventType(cls.event_type, cls.schema_version, existing, cls)
        if cls.event_type.startswith(SYSTEM_PREFIX):
            raise TypeError(
                f"{cls.__qualname__}.event_type {cls.event_type!r} starts with "
                f"{SYSTEM_PREFIX!r}, which names the store's own events: choose another name"
            )
        current = self._current.get(cls.event_type)
        if current is not None and current != cls.schema_version:
            older = self._classes[(cls.event_type, current)]
            raise DuplicateEventType(cls.event_type, current, older, cls)
        personal_fields(cls)  # a PersonalData mark that cannot work fails here
        self._classes[key] = cls
        self._current[cls.event_type] = cls.schema_version
        return cls

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._classes.get(
            (getattr(cls, "event_type", ""), getattr(cls, "schema_version", 0))
        ) is cls

    def __iter__(self) -> Iterator[type[Event]]:
        return (cls for cls in self._classes.values() if cls not in SYSTEM_EVENTS)

    def __len__(self) -> int:
        return len(self._classes) - len(SYSTEM_EVENTS)

    def current_version(self, event_type: str) -> int | None:
        """The registered (current) schema version of a type name, or None."""
        return self._current.get(event_type)

    def class_for(self, event_type: str) -> type[Event] | None:
        """The registered class of a type name, or None."""
        version = self._current.get(event_type)
        return None if version is None else self._classes[(event_type, version)]

    def class_of(self, event_type: str, schema_version: int) -> type[Event] | None:
        """The class registered for a stored type name and version, or None."""
        return self._classes.get((event_type, schema_version))

    def upcasts(self, event_type: str, schema_version: int) -> bool:
        """Whether reading a stored event of this type and version goes through the
        upcaster (it is not the type's current version)."""
        return self.upcaster is not None and self._current.get(event_type) != schema_version

    def check_registered(self, event: Event) -> None:
        """Raise ``UnregisteredEvent`` unless the event's class is registered."""
        cls = type(event)
        if self._classes.get((cls.event_type, cls.schema_version)) is not cls:
            raise UnregisteredEvent(cls)

    def stored_types(self, event_types: Collection[str]) -> Collection[str]:
        """The stored type names a type-filtered read must ask for.

        Includes names that upcasters rename or split into ``event_types``, so a reader
        never misses an event stored under an older name. Such a read may also return
        records of other types (a split's other parts); readers skip types they do not
        handle.
        """
        if self.upcaster is None:
            return event_types
        return self.upcaster.stored_types_of(event_types)

    def upcast(self, record: RecordedEvent) -> list[RecordedEvent]:
        """The record at the current version of its type (several if an upcaster splits it).

        A corrupt record (``record.corrupt``) has no data to upcast and stays as it is.
        """
        if (
            self.upcaster is None
            or self._current.get(record.event_type) == record.schema_version
            or record.corrupt is not None
        ):
            return [record]
        shapes = self.upcaster.upcast(record.event_type, record.schema_version, record.data)
        return [
            record if shape == (record.event_type, record.schema_version, record.data)
            else _reshaped(record, *shape)
            for shape in shapes
        ]

    def upcast_all(self, records: Iterable[RecordedEvent]) -> list[RecordedEvent]:
        """``upcast`` over many records, keeping their order."""
        if self.upcaster is None:
            return list(records)
        out: list[RecordedEvent] = []
        current = self._current
        for record in records:
            if current.get(record.event_type) == record.schema_version:
                out.append(record)
            else:
                out.extend(self.upcast(record))
        return out

    def decode(self, record: RecordedEvent) -> Event:
        """The typed event of an (upcast) record.

        Raises ``UnknownEventType`` for a type or version with no registered class and
        ``EventDecodeError`` (naming the fields) when the data does not validate, or when
        the stored row could not be read at all (``record.corrupt``).
        """
        return self.decode_stored(
            record.stream_id, record.stream_version, record.position, record.event_type,
            record.schema_version, record.data, record.corrupt,
        )

    def decode_stored(
        self, stream_id: str, stream_version: int, position: int, event_type: str,
        schema_version: int, data: dict[str, Any], corrupt: str | None = None,
    ) -> Event:
        """``decode`` of a stored event given by its parts rather than a record."""
        if corrupt is not None:
            raise EventDecodeError(
                event_type, schema_version, stream_id, position, corrupt,
                stream_version=stream_version, corrupt=True,
            )
        cls = self._classes.get((event_type, schema_version))
        if cls is None:
            raise UnknownEventType(event_type, schema_version, stream_id, position)
        try:
            # The validator itself: model_validate only forwards to it, but passing its
            # seven keyword arguments on costs about as much as validating a small event.
            event: Event = cls.__pydantic_validator__.validate_python(data)
            return event
        except pydantic.ValidationError as exc:
            raise EventDecodeError(
                event_type, schema_version, stream_id, position, _describe(exc),
                stream_version=stream_version,
            ) from exc

    def is_known(self, record: RecordedEvent) -> bool:
        """Whether ``decode`` has a class for the record's type and version."""
        return (record.event_type, record.schema_version) in self._classes


def _reshaped(
    record: RecordedEvent, event_type: str, schema_version: int, data: dict[str, Any]
) -> RecordedEvent:
    """The record with an upcast shape. Built directly: ``dataclasses.replace`` costs
    three times the constructor, paid for every upcast event of every read (a test keeps
    this in step with RecordedEvent's fields)."""
    return RecordedEvent(
        record.event_id, record.stream_id, record.stream_version, record.transaction_id,
        record.position, event_type, schema_version, data, record.metadata,
        record.recorded_at, record.corrupt,
    )


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "(event)"
        parts.append(f"field {location!r}: {error['msg']}")
    return "; ".join(parts)
