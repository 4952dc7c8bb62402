"""A stream read for a fold: typed events decoded one by one, most straight from JSON text.

An aggregate load needs each event's type, version and data, nothing of the envelope, so
no ``RecordedEvent`` is built. A row stored at its type's current version is validated
from its JSON text by pydantic (``validate_json``: no intermediate dict); a row of an
older version is parsed and carried forward by the upcaster. Rows of types with personal
data go through the store's ordinary read (sealed values must be opened first), and so
does any row that fails, so every error is the one ``registry.decode`` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pydantic
import pydantic_core

from eventfold.eventstore.event import Event
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.registry import EventRegistry
from eventfold.eventstore.shredder import Shredder

Row = Sequence[Any]
"""A stored row in the read columns' order: event_id, stream_id, stream_version,
transaction_id, position, event_type, schema_version, data (JSON text), metadata (JSON
text), recorded_at."""
_VERSION, _TYPE, _SCHEMA, _DATA = 2, 5, 6, 7


class TypedStream:
    """The typed events of a stream read (iterate once), and the version of its last row.

    ``version`` is the stream version of the last stored row read (0 when none): events
    skipped as unknown or split by an upcaster still count, as in the stream.
    """

    def __init__(
        self,
        registry: EventRegistry,
        items: list[RecordedEvent | Row],
        version: int,
        to_record: Callable[[Row], RecordedEvent],
        skip_unknown: bool,
    ) -> None:
        self._registry = registry
        self._items = items
        self.version = version
        self._to_record = to_record
        self._skip_unknown = skip_unknown

    @classmethod
    def of_records(
        cls, registry: EventRegistry, records: list[RecordedEvent], version: int,
        skip_unknown: bool,
    ) -> TypedStream:
        """A ``TypedStream`` of records already opened and upcast (the memory store)."""
        return cls(registry, list(records), version, _no_rows, skip_unknown)

    def __iter__(self) -> Iterator[Event]:
        registry = self._registry
        decode = registry.decode
        upcasts = registry.upcasts
        class_of = registry.class_of
        skip_unknown = self._skip_unknown
        for item in self._items:
            if isinstance(item, RecordedEvent):
                if not skip_unknown or registry.is_known(item):
                    yield decode(item)
                continue
            event_type, schema_version = item[_TYPE], item[_SCHEMA]
            if upcasts(event_type, schema_version):
                yield from self._upcast(item)
                continue
            cls = class_of(event_type, schema_version)
            if cls is None:
                if not skip_unknown:
                    yield decode(self._to_record(item))  # raises UnknownEventType
                continue
            try:
                event: Event = cls.__pydantic_validator__.validate_json(item[_DATA])
            except pydantic.ValidationError:
                # Bad JSON or data: the ordinary decode raises the error it always did.
                yield decode(self._to_record(item))
            else:
                yield event

    def _upcast(self, row: Row) -> list[Event]:
        """The events of a row of an older version: its parsed data carried forward by the
        upcaster, each shape validated (all of a split's before any is folded)."""
        registry = self._registry
        upcaster = registry.upcaster
        assert upcaster is not None
        try:
            data = pydantic_core.from_json(row[_DATA])
        except ValueError:
            data = None
        if type(data) is dict:
            events: list[Event] = []
            for event_type, schema_version, shape in upcaster.upcast(
                row[_TYPE], row[_SCHEMA], data
            ):
                cls = registry.class_of(event_type, schema_version)
                if cls is None and self._skip_unknown:
                    continue
                if cls is None:
                    break
                try:
                    events.append(cls.__pydantic_validator__.validate_python(shape))
                except pydantic.ValidationError:
                    break
            else:
                return events
        # Damaged JSON, an unknown shape or data that does not validate: the ordinary
        # path (record, upcast, decode) raises the error it always did.
        skip_unknown = self._skip_unknown
        return [
            registry.decode(record) for record in registry.upcast(self._to_record(row))
            if not skip_unknown or registry.is_known(record)
        ]


async def typed_stream(
    registry: EventRegistry,
    shredder: Shredder,
    rows: list[Row],
    to_records: Callable[[list[Row]], list[RecordedEvent]],
    skip_unknown: bool,
) -> TypedStream:
    """The rows of a stream read as a ``TypedStream``: rows of types that may hold personal
    data become records here, in their place (``to_records``, then opened by the shredder
    and upcast, as ``read_stream`` does); the others stay rows."""
    personal_types = shredder.personal_types()
    items: list[RecordedEvent | Row] = list(rows)
    sealed = [row for row in rows if row[_TYPE] in personal_types]
    if sealed:
        opened = iter(await shredder.reveal(to_records(sealed)))
        items = []
        for row in rows:
            if row[_TYPE] in personal_types:
                items.extend(registry.upcast(next(opened)))
            else:
                items.append(row)
    return TypedStream(
        registry, items, rows[-1][_VERSION] if rows else 0,
        lambda row: to_records([row])[0], skip_unknown,
    )


def _no_rows(row: Row) -> RecordedEvent:
    raise AssertionError("a TypedStream of records holds no rows")
