"""Checking an append's arguments and encoding its events as JSON, once for every backend;
reading stored JSON back, row by row; the rule that tells a retried batch from a clash."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pydantic_core

from eventfold.eventstore.causation import stamped
from eventfold.eventstore.errors import DuplicateEventId, InvalidAppend
from eventfold.eventstore.event import Event
from eventfold.eventstore.records import AppendResult, ExpectedVersion, NewEvent, StreamState
from eventfold.eventstore.registry import EventRegistry

MAX_STREAM_ID_LENGTH = 200

MAX_DEPTH = 200
"""The deepest nesting of objects and arrays an event's data or metadata may have (its outer
object counts as one level). It is the depth pydantic-core's JSON parser, which reads the
rows back, accepts; the other backends' parsers and PostgreSQL's jsonb take more. A test of
the conformance suite pins it."""

CONTEXT_KEYS = frozenset({"correlation_id", "causation_id", "traceparent"})
"""Metadata keys that describe the write rather than the event: stamped from the context
(``causation.stamped``), they may differ on a retry, so the replay rule ignores them."""


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
    problem = stream_id_problem(stream_id)
    if problem is not None:
        raise InvalidAppend(problem)
    assert isinstance(stream_id, str)
    return stream_id


def stream_id_problem(stream_id: object) -> str | None:
    """What is wrong with a stream id (None when nothing is), for appends and reads alike."""
    if not isinstance(stream_id, str):
        return f"stream id must be a string, got {type(stream_id).__name__}"
    if not stream_id or stream_id.strip() != stream_id:
        return (
            f"stream id {stream_id!r} is empty or has surrounding whitespace: use e.g. 'Order-123'"
        )
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        return (
            f"stream id is {len(stream_id)} characters long, the limit is {MAX_STREAM_ID_LENGTH}"
        )
    return None


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
    """Check and serialize a batch; raise ``InvalidAppend`` before anything is written.

    What the store could not give back as it was given is refused here, on every backend:
    NaN and infinities (JSON has no such numbers; pydantic would write ``null``), NUL
    characters (PostgreSQL refuses them), nesting deeper than ``MAX_DEPTH``.
    """
    check_stream_id(stream_id)
    if isinstance(events, (Event, NewEvent)) or not isinstance(events, Sequence):
        raise InvalidAppend("events must be a list of events")
    if not events:
        raise InvalidAppend(f"empty batch for stream {stream_id!r}: append at least one event")
    encoded: list[EncodedEvent] = []
    seen: set[uuid.UUID] = set()
    for index, item in enumerate(events):
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
            data, metadata = _event_json(new)
        except _Unfaithful as exc:
            raise InvalidAppend(
                f"event {index} ({new.event.event_type}) of the batch for stream "
                f"{stream_id!r}: {exc}; nothing was written"
            ) from exc
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


class _Unfaithful(Exception):
    """What keeps one event from being stored as it is (``encode_batch`` says which)."""


def _event_json(new: NewEvent) -> tuple[str, str]:
    """The event's data and metadata as JSON text, or ``_Unfaithful``."""
    try:
        data = new.event.model_dump_json()
    except pydantic_core.PydanticSerializationError as exc:
        raise _Unfaithful(
            f"its data cannot be written as JSON ({exc}; data may nest at most {MAX_DEPTH} "
            "levels)"
        ) from exc
    # pydantic writes NaN and infinities as null: only JSON holding a null can hide one.
    # Python mode, because mode="json" already turns those in untyped (Any) fields to None.
    if "null" in data:
        _check_finite(new.event.model_dump(), "data")
    _check_text(data, "data")
    metadata = _metadata_json(stamped(new.metadata))
    if metadata != "{}":
        _check_text(metadata, "metadata")
    return data, metadata


class StoredFacts(NamedTuple):
    """What the replay rule needs of a stored event (data and metadata as stored JSON)."""

    stream_id: str
    stream_version: int
    event_type: str
    position: int
    transaction_id: int
    schema_version: int
    data: str
    metadata: str


def replayed(
    stream_id: str, batch: Sequence[EncodedEvent], stored: Sequence[StoredFacts | None]
) -> AppendResult | None:
    """The rule for a batch whose ids may be stored already (``stored`` lines up with it).

    Returns the original result when the whole batch is stored as it was sent (a retry
    after a lost reply), None when none of it is; raises ``DuplicateEventId`` otherwise.
    "As it was sent": every id in this stream, at consecutive versions in the batch's
    order, with the same type, schema version and data, and the same metadata but for
    ``CONTEXT_KEYS``; JSON compares as values (key order, spacing and how a number is
    spelled do not count, as in PostgreSQL's jsonb).
    """
    if all(facts is None for facts in stored):
        return None
    first, last = stored[0], stored[-1]
    for index, (facts, item) in enumerate(zip(stored, batch, strict=True)):
        if facts is None or first is None:
            # Name an id that is stored: that is the one the caller must look at.
            clash = next(item for facts, item in zip(stored, batch, strict=True) if facts)
            raise DuplicateEventId(
                stream_id, clash.event_id, "the rest of the batch is not stored with it"
            )
        reason = _difference(stream_id, first.stream_version + index, facts, item)
        if reason is not None:
            raise DuplicateEventId(stream_id, item.event_id, reason)
    assert first is not None and last is not None
    return AppendResult(
        stream_id, last.stream_version, first.position, last.position, first.transaction_id
    )


def _difference(
    stream_id: str, version: int, facts: StoredFacts, item: EncodedEvent
) -> str | None:
    """How the stored event differs from the one sent with its id (None: it does not)."""
    if facts.stream_id != stream_id:
        return f"it is stored in stream {facts.stream_id!r}"
    if facts.stream_version != version:
        return f"it is stored at version {facts.stream_version}, not {version}"
    if (facts.event_type, facts.schema_version) != (item.event_type, item.schema_version):
        return (
            f"it is stored as {facts.event_type} v{facts.schema_version}, not "
            f"{item.event_type} v{item.schema_version}"
        )
    if not _same_json(facts.data, item.data):
        return "it is stored with other data"
    if not _same_json(facts.metadata, item.metadata, ignored=CONTEXT_KEYS):
        return "it is stored with other metadata"
    return None


def _same_json(stored: str, sent: str, ignored: frozenset[str] = frozenset()) -> bool:
    """Whether two JSON objects hold the same values (numbers compared exactly)."""
    if stored == sent:
        return True
    try:
        a, b = (json.loads(text, parse_float=Decimal, parse_int=Decimal) for text in (stored, sent))
    except ValueError:  # a damaged stored row differs from anything sent
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        for key in ignored:
            a.pop(key, None)
            b.pop(key, None)
    return bool(a == b)


def decode_rows(
    rows: Sequence[Sequence[Any]], data_at: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str | None]]:
    """The stored JSON of rows (data in column ``data_at``, metadata in the next one) as
    their data, metadata and ``corrupt`` lists, each lined up with the rows.

    Every row is parsed on its own, so a damaged cell can neither fail nor change another
    row: its data and metadata come back empty and its ``corrupt`` says why (see
    ``EventDecodeError``). pydantic-core's parser decodes these small documents about
    three times faster than ``json.loads``; empty metadata, the common case, skips it.
    """
    parse = pydantic_core.from_json
    meta_at = data_at + 1
    try:
        data = [parse(row[data_at]) for row in rows]
        metadata = [{} if row[meta_at] == "{}" else parse(row[meta_at]) for row in rows]
        if all(type(value) is dict for value in data) and all(
            type(value) is dict for value in metadata
        ):
            return data, metadata, [None] * len(rows)
    except (ValueError, TypeError):  # TypeError: a cell that is not text
        pass
    # Some row is damaged: find it, one row at a time.
    data, metadata = [], []
    corrupt: list[str | None] = []
    for row in rows:
        problem: str | None = None
        try:
            value = parse(row[data_at])
            meta = {} if row[meta_at] == "{}" else parse(row[meta_at])
        except (ValueError, TypeError) as exc:
            problem = f"its JSON is not valid ({exc})"
        else:
            if type(value) is not dict or type(meta) is not dict:
                problem = "its data or metadata is not a JSON object"
        if problem is not None:
            value, meta = {}, {}
        data.append(value)
        metadata.append(meta)
        corrupt.append(problem)
    return data, metadata, corrupt


def _parse(text: str) -> Any:
    return pydantic_core.from_json(text)


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
        return json.dumps(
            dict(metadata), separators=(",", ":"), default=_plain, allow_nan=False
        )
    except RecursionError as exc:
        raise _Unfaithful(
            f"its metadata nests too deeply (or holds itself): keep it within {MAX_DEPTH} "
            "levels"
        ) from exc
    except ValueError as exc:
        if "Out of range float" in str(exc):
            _check_finite(dict(metadata), "metadata")
        raise _Unfaithful(f"metadata must be a JSON object: {exc}") from exc
    except TypeError as exc:
        raise _Unfaithful(f"metadata must be a JSON object: {exc}") from exc


def _check_finite(value: Any, part: str) -> None:
    """Raise ``_Unfaithful`` naming the first NaN or infinity in a JSON-ready value."""
    # Written with NaN and infinities kept as such (in C), the text shows whether there is
    # one at all; only then does the slower walk look for its path.
    text = pydantic_core.to_json(value, inf_nan_mode="constants", fallback=_no_json)
    if b"NaN" not in text and b"Infinity" not in text:
        return
    found = _non_finite(value, "")
    if found is not None:
        path, number = found
        raise _Unfaithful(
            f"its {part} holds {number} at {path or '(top)'!r}, which JSON cannot store (it "
            "would come back as null): store None or a string instead"
        )


def _no_json(value: object) -> None:
    """Values JSON has no form for (the event's own serializer handled them): not numbers."""


def _non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity in a JSON-ready value, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    steps: Iterable[tuple[str, Any]]
    if isinstance(value, dict):
        steps = ((f"{path}.{key}" if path else str(key), item) for key, item in value.items())
    elif isinstance(value, (list, tuple, set, frozenset)):
        steps = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for step, item in steps:
        found = _non_finite(item, step)
        if found is not None:
            return found
    return None


def _check_text(text: str, part: str) -> None:
    """Raise ``_Unfaithful`` when JSON text holds a NUL or nests deeper than ``MAX_DEPTH``."""
    if _NUL in text and _has_nul(json.loads(text)):
        raise _Unfaithful(
            f"its {part} holds a NUL character (\\x00), which PostgreSQL cannot store in "
            "JSON: remove it"
        )
    # Each level of nesting takes two brackets: most texts are too short or have too few
    # brackets to come near the limit.
    if len(text) > 2 * MAX_DEPTH and text.count("{") + text.count("[") > MAX_DEPTH:
        _check_depth(text, part)


def _check_depth(text: str, part: str) -> None:
    """Raise ``_Unfaithful`` when JSON text nests deeper than ``MAX_DEPTH``: the parser
    of the read path refuses exactly that."""
    try:
        _parse(text)
    except ValueError as exc:
        if "recursion limit" not in str(exc):
            raise
        raise _Unfaithful(
            f"its {part} nests objects and arrays deeper than the store's limit of "
            f"{MAX_DEPTH} levels, which reads could not parse back: flatten it"
        ) from exc


def _plain(value: object) -> str:
    """Ids and times are common in metadata: store them as their text."""
    if isinstance(value, (uuid.UUID, datetime)):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON")
