"""A stream read for a fold: typed events decoded one by one, most straight from JSON text.

An aggregate load needs each event's type, version and data, nothing of the envelope: the
backends read just those columns (``FoldRow``) and build no ``RecordedEvent``. A row
stored at its type's current version is validated from its JSON text by pydantic
(``validate_json``: no intermediate dict); a row of an older version is parsed and carried
forward by the upcaster. A row that fails either way is decoded again as ``read_stream``
and ``registry.decode`` would, so every error is the one they raise. Metadata is not read:
a damaged metadata cell does not fail a load. A stream holding types with personal data
is read as ``read_stream`` reads it (its sealed values must be opened first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pydantic
import pydantic_core

from eventfold.eventstore.encoding import decode_rows
from eventfold.eventstore.event import Event
from eventfold.eventstore.records import RecordedEvent
from eventfold.eventstore.registry import EventRegistry, FreshUpcaster, StoredShape
from eventfold.eventstore.shredder import Shredder
from eventfold.eventstore.system_events import SYSTEM_EVENT_TYPES

FoldRow = Sequence[Any]
"""A stored row as a fold reads it: stream_version, position, event_type, schema_version,
data (JSON text)."""
_VERSION, _POSITION, _TYPE, _SCHEMA, _DATA = range(5)
_UPCAST = "upcast"
_UNSEEN = "unseen"
_SYSTEM = "system"


class TypedStream:
    """The typed events of a stream read (iterate once), and the version of its last row.

    ``version`` is the stream version of the last stored row read (0 when none): events
    skipped as unknown or split by an upcaster still count, as in the stream. The store's
    own events (``StreamDeleted``, ``StreamTruncated``) are not folded, but count too.
    ``readable_from`` is the stream's first readable version: events before it were
    deleted or truncated (see docs/lifecycle.md), so a snapshot older than it is stale.
    """

    def __init__(
        self,
        registry: EventRegistry,
        stream_id: str,
        version: int,
        skip_unknown: bool,
        *,
        rows: Sequence[FoldRow] = (),
        records: Sequence[RecordedEvent] = (),
        readable_from: int = 1,
    ) -> None:
        self._registry = registry
        self.readable_from = readable_from
        self._stream_id = stream_id
        self.version = version
        self._skip_unknown = skip_unknown
        self._rows = rows
        self._records = records
        self._upcast_fresh: Callable[[str, int, dict[str, Any]], list[StoredShape]] | None = None

    @property
    def first_version(self) -> int:
        """The stream version of the first row read (0 when none): above the version a
        load asked for when the events between were archived (see docs/lifecycle.md)."""
        if self._rows:
            return int(self._rows[0][_VERSION])
        return self._records[0].stream_version if self._records else 0

    def __iter__(self) -> Iterator[Event]:
        registry = self._registry
        for record in self._records:
            if record.event_type in SYSTEM_EVENT_TYPES:
                continue
            if not self._skip_unknown or registry.is_known(record):
                yield registry.decode(record)
        # How each stored (type, version) reads, found once per iteration: its class,
        # _UPCAST, or None (unknown).
        ways: dict[tuple[str, int], type[Event] | str | None] = {}
        for row in self._rows:
            key = (row[_TYPE], row[_SCHEMA])
            way = ways.get(key, _UNSEEN)
            if way is _UNSEEN:
                way = ways[key] = self._way(key)
            if way is None:
                if not self._skip_unknown:
                    yield from self._decoded(row)  # raises UnknownEventType
            elif way is _SYSTEM:
                continue
            elif isinstance(way, str):
                yield from self._upcast(row)
            else:
                try:
                    event: Event = way.__pydantic_validator__.validate_json(row[_DATA])
                except pydantic.ValidationError:
                    yield from self._decoded(row)  # raises the error decode always did
                else:
                    yield event

    def _way(self, key: tuple[str, int]) -> type[Event] | str | None:
        if key[0] in SYSTEM_EVENT_TYPES:
            return _SYSTEM
        if self._registry.upcasts(*key):
            return _UPCAST
        return self._registry.class_of(*key)

    def _upcast(self, row: FoldRow) -> list[Event]:
        """The events of a row of an older version: its parsed data carried forward by the
        upcaster, each shape validated (all of a split's before any is folded)."""
        registry = self._registry
        upcast = self._upcast_fresh
        if upcast is None:
            # Parsed data belongs to the load alone: an upcaster that can skip its copy does.
            upcaster = registry.upcaster
            assert upcaster is not None
            upcast = self._upcast_fresh = (
                upcaster.upcast_fresh if isinstance(upcaster, FreshUpcaster) else upcaster.upcast
            )
        try:
            data = pydantic_core.from_json(row[_DATA])
        except ValueError:
            data = None
        if type(data) is dict:
            events: list[Event] = []
            for event_type, schema_version, shape in upcast(row[_TYPE], row[_SCHEMA], data):
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
        return self._decoded(row)

    def _decoded(self, row: FoldRow) -> list[Event]:
        """The row decoded the ordinary way (parse, upcast unless damaged, decode): for rows
        the fast ways could not read, so that the error is the ordinary one."""
        registry = self._registry
        [data], _, [corrupt] = decode_rows([(row[_DATA], "{}")], 0)
        shapes = [(row[_TYPE], row[_SCHEMA], data)]
        if corrupt is None and registry.upcaster is not None and registry.upcasts(
            row[_TYPE], row[_SCHEMA]
        ):
            shapes = registry.upcaster.upcast(row[_TYPE], row[_SCHEMA], data)
        return [
            registry.decode_stored(
                self._stream_id, row[_VERSION], row[_POSITION], event_type, schema_version,
                shape, corrupt,
            )
            for event_type, schema_version, shape in shapes
            if not self._skip_unknown or registry.class_of(event_type, schema_version)
        ]


async def typed_stream(
    registry: EventRegistry,
    shredder: Shredder,
    stream_id: str,
    rows: list[FoldRow],
    read_records: Callable[[int, int], Awaitable[list[RecordedEvent]]],
    skip_unknown: bool,
    *,
    readable_from: int = 1,
) -> TypedStream:
    """The rows of a stream read as a ``TypedStream``. When a row's type may hold personal
    data, the stream's rows are read again as records (``read_records(first, last)``
    versions, which ``read_stream`` opens and upcasts) instead."""
    if not rows:
        return TypedStream(registry, stream_id, 0, skip_unknown, readable_from=readable_from)
    first, last = rows[0][_VERSION], rows[-1][_VERSION]
    personal_types = shredder.personal_types()
    if personal_types and any(row[_TYPE] in personal_types for row in rows):
        records = await read_records(first, last)
        return TypedStream(
            registry, stream_id, last, skip_unknown, records=records,
            readable_from=readable_from,
        )
    return TypedStream(
        registry, stream_id, last, skip_unknown, rows=rows, readable_from=readable_from
    )

