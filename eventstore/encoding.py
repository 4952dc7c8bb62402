"""Checking an append's arguments and encoding its events as JSON, once for every backend."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import pydantic_core

from eventfold.eventstore.causation import stamped
from eventfold.eventstore.errors import DuplicateEventId, InvalidAppend
from eventfold.eventstore.event import Event
from eventfold.eventstore.records import AppendResult, ExpectedVersion, NewEvent, StreamState
from eventfold.eventstore.registry import EventRegistry

MAX_STREAM_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A new event as the backends write it: ids, type, version and JSON text."""

    event_id: uuid.UUID
    event_type: str
    schema_version: int
    data: str
    metadata: str


def check_stream_id(stream_id: object) -> str:
    """Return the stream id, or raise ``InvalidAppend`` saying what is wrong with it."""
    if not isinstance(stream_id, str):
        raise InvalidAppend(f"stream id must be a string, got {type(stream_id).__name__}")
    if not stream_id or stream_id.strip() != stream_id:
        raise InvalidAppend(
            f"stream id {stream_id!r} is empty or has surrounding whitespace: use e.g. 'Order-123'"
        )
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidAppend(
            f"stream id is {len(stream_id)} characters long, the limit is {MAX_STREAM_ID_LENGTH}"
        )
    return stream_id


def check_expected_version(expected: object) -> ExpectedVersion:
    """Return the expected version, or raise ``InvalidAppend``; 0 means NO_STREAM."""
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise InvalidAppend(
            f"expected_version must be an int >= 0 or NO_STREAM, STREAM_EXISTS or ANY, "
            f"got {expected!r}"
        )
    if expected < 0:
        raise InvalidAppend(
            f"expected_version {expected} is negative: use NO_STREAM (or 0) for a new stream"
        )
    return expected


def encode_batch(
    registry: EventRegistry, stream_id: str, events: Sequence[NewEvent | Event]
) -> list[EncodedEvent]:
    """Check and serialize a batch; raise ``InvalidAppend`` before anything is written."""
    check_stream_id(stream_id)
    if isinstance(events, (Event, NewEvent)) or not isinstance(events, Sequence):
        raise InvalidAppend("events must be a list of events")
    if not events:
        raise InvalidAppend(f"empty batch for stream {stream_id!r}: append at least one event")
    encoded: list[EncodedEvent] = []
    seen: set[uuid.UUID] = set()
    for item in events:
        new = item if isinstance(item, NewEvent) else NewEvent(item) if isinstance(
            item, Event
        ) else None
        if new is None:
            raise InvalidAppend(
                f"cannot append {type(item).__name__}: append Event instances or NewEvent"
            )
        registry.check_registered(new.event)
        if new.event_id in seen:
            raise InvalidAppend(f"event id {new.event_id} appears twice in one batch")
        seen.add(new.event_id)
        try:
            data = new.event.model_dump_json()
        except pydantic_core.PydanticSerializationError as exc:
            raise InvalidAppend(
                f"{new.event.event_type} for stream {stream_id!r} cannot be written as JSON: "
                f"{exc}"
            ) from exc
        metadata = _metadata_json(stamped(new.metadata))
        for what, text in (("data", data), ("metadata", metadata)):
            if _NUL in text and _has_nul(json.loads(text)):
                raise InvalidAppend(
                    f"the {what} of {new.event.event_type} for stream {stream_id!r} holds a NUL "
                    "character (\\x00), which PostgreSQL cannot store in JSON: remove it"
                )
        encoded.append(
            EncodedEvent(
                event_id=new.event_id,
                event_type=new.event.event_type,
                schema_version=new.event.schema_version,
                data=data,
                metadata=metadata,
            )
        )
    return encoded


class StoredFacts(NamedTuple):
    """What the replay rule needs of a stored event."""

    stream_id: str
    stream_version: int
    event_type: str
    position: int
    transaction_id: int


def replayed(
    stream_id: str, batch: Sequence[EncodedEvent], stored: Sequence[StoredFacts | None]
) -> AppendResult | None:
    """The rule for a batch whose ids may be stored already (``stored`` lines up with it).

    Returns the original result when the whole batch is stored as it was sent (a retry
    after a lost reply), None when none of it is; raises ``DuplicateEventId`` otherwise.
    """
    if all(facts is None for facts in stored):
        return None
    first, last = stored[0], stored[-1]
    if first is None or last is None or any(
        facts is None
        or facts.stream_id != stream_id
        or facts.stream_version != first.stream_version + index
        or facts.event_type != item.event_type
        for index, (facts, item) in enumerate(zip(stored, batch, strict=True))
    ):
        clash = next(item for facts, item in zip(stored, batch, strict=True) if facts)
        raise DuplicateEventId(stream_id, clash.event_id)
    return AppendResult(
        stream_id, last.stream_version, first.position, last.position, first.transaction_id
    )


_NUL = "\\u0000"
"""How JSON writes a NUL character; a cheap first test before looking closer."""


def _has_nul(value: object) -> bool:
    """Whether any string (key or value) in decoded JSON holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _metadata_json(metadata: Any) -> str:
    if not metadata:
        return "{}"
    try:
        return json.dumps(dict(metadata), separators=(",", ":"), default=_plain)
    except (TypeError, ValueError) as exc:
        raise InvalidAppend(f"metadata must be a JSON object: {exc}") from exc


def _plain(value: object) -> str:
    """Ids and times are common in metadata: store them as their text."""
    if isinstance(value, (uuid.UUID, datetime)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON")
