"""A stream read for a fold: typed events decoded one by one, most straight from JSON text.

An aggregate load needs each event's type, version and data, nothing of the envelope. A
row stored at its type's current version, of a type without personal data, is validated
from its JSON text by pydantic (``validate_json``: no ``RecordedEvent``, no intermediate
dict). Rows an upcaster carries forward or whose sealed values must be opened go through
the store's ordinary read (``RecordedEvent``, ``registry.upcast``, ``registry.decode``),
and so does a fast row that does not validate, so every error is the one ``decode`` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pydantic

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
        skip_unknown = self._skip_unknown
        class_of = registry.class_of
        for item in self._items:
            if isinstance(item, RecordedEvent):
                if not skip_unknown or registry.is_known(item):
                    yield decode(item)
                continue
            cls = class_of(item[_TYPE], item[_SCHEMA])
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


async def typed_stream(
    registry: EventRegistry,
    shredder: Shredder,
    rows: list[Row],
    to_records: Callable[[list[Row]], list[RecordedEvent]],
    skip_unknown: bool,
) -> TypedStream:
    """The rows of a stream read as a ``TypedStream``: rows that need an upcaster or whose
    type may hold personal data become records here, in their place (``to_records``, then
    opened by the shredder and upcast, as ``read_stream`` does); the others stay rows."""
    upcasts = registry.upcasts
    personal_types = shredder.personal_types()

    def slow(row: Row) -> bool:
        return upcasts(row[_TYPE], row[_SCHEMA]) or row[_TYPE] in personal_types

    items: list[RecordedEvent | Row] = list(rows)
    slow_rows = [row for row in rows if slow(row)]
    if slow_rows:
        opened = iter(await shredder.reveal(to_records(slow_rows)))
        items = []
        for row in rows:
            if slow(row):
                items.extend(registry.upcast(next(opened)))
            else:
                items.append(row)
    return TypedStream(
        registry, items, rows[-1][_VERSION] if rows else 0,
        lambda row: to_records([row])[0], skip_unknown,
    )


def _no_rows(row: Row) -> RecordedEvent:
    raise AssertionError("a TypedStream of records holds no rows")
