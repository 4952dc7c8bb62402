"""Stored envelopes as CloudEvents 1.0 in structured JSON mode, and back.

The mapping (docs/messaging.md has the table):

- ``id`` = ``event_id``, ``source`` = configurable (``eventfold`` by default, e.g.
  ``eventfold://orders``), ``type`` = the stable ``event_type`` (with an optional prefix,
  e.g. ``com.acme.``) - *without* the schema version, so a consumer's filters survive a
  version bump; the version travels in ``schemaversion``.
- ``subject`` = ``stream_id``, ``time`` = ``recorded_at`` (RFC 3339, UTC),
  ``datacontenttype`` = ``application/json``, ``data`` = the event's JSON object.
- Extension attributes (lowercase alphanumerics, as the spec requires): ``streamversion``,
  ``schemaversion`` (Integers), ``position`` and ``transactionid`` (Strings: they are 64-bit
  and CloudEvents Integers are 32-bit), ``correlationid``, ``causationid``, ``traceparent``
  and ``tracestate`` (lifted out of the metadata when they are strings), and ``metadata``:
  the rest of the metadata as a JSON object in a String (extension values must be scalars).

``to_cloudevent`` and ``from_cloudevent`` round-trip a ``RecordedEvent`` exactly;
``import_cloudevent`` turns any CloudEvent with a JSON object as data (ours or another
producer's) into a stream id and a ``NewEvent`` to append to another store.

An imported event keeps its origin: the producer's ``id``, ``source``, ``time``,
``dataschema`` and unknown extension attributes go into ``metadata["cloudevent"]``, and
``to_cloudevent`` sends them on unchanged (``id``, ``source`` and ``time`` name the
occurrence, wherever it is stored). eventfold's own id and time of such an event travel in
the extensions ``eventid`` and ``recordedat``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from eventfold.eventstore.errors import (
    CloudEventError,
    EventDecodeError,
    EventfoldError,
    UnknownEventType,
)
from eventfold.eventstore.records import NewEvent, RecordedEvent
from eventfold.eventstore.registry import EventRegistry

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "eventfold"
JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
"""The content type of a message whose body is a whole CloudEvent (structured mode)."""

# Metadata keys lifted into extension attributes of their own (when they hold strings).
_LIFTED = {
    "correlation_id": "correlationid",
    "causation_id": "causationid",
    "traceparent": "traceparent",
    "tracestate": "tracestate",
}
ORIGIN = "cloudevent"
"""The metadata key of an imported event's origin: the producer's ``id``, ``source``,
``time``, ``dataschema`` and unknown ``extensions``."""

# Attributes this module reads or writes; any other attribute of an imported CloudEvent is
# a foreign extension, kept in its origin.
_KNOWN = {
    "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
    "data", "data_base64", "streamversion", "schemaversion", "position", "transactionid",
    "metadata", "eventid", "recordedat", *_LIFTED.values(),
}
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?P<fraction>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
_INT32_MAX = 2**31 - 1
# Non-UUID ids of foreign CloudEvents map to stable UUIDs in this namespace (source + id
# is what the spec makes unique), so importing the same event twice stays idempotent.
_FOREIGN_IDS = uuid.UUID("6f1c7a52-4be0-5d8e-9a55-0c1e8f3b2d71")


def to_cloudevent(
    record: RecordedEvent, *, source: str = DEFAULT_SOURCE, type_prefix: str = ""
) -> dict[str, Any]:
    """The record as a CloudEvents 1.0 JSON object (a dict ready for ``json.dumps``).

    A record whose stored row is damaged (``record.corrupt``) is refused with
    ``EventDecodeError``: its data is unknown, and an empty object would pass for it.
    """
    if not source:
        raise ValueError("a CloudEvent needs a non-empty source, e.g. 'eventfold://orders'")
    if record.corrupt is not None:
        raise EventDecodeError(
            record.event_type, record.schema_version, record.stream_id, record.position,
            record.corrupt, stream_version=record.stream_version, corrupt=True,
        )
    cloudevent: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": str(record.event_id),
        "source": source,
        "type": type_prefix + record.event_type,
        "subject": record.stream_id,
        "time": _rfc3339(record.recorded_at),
        "datacontenttype": JSON_CONTENT_TYPE,
        "streamversion": _integer(record.stream_version),
        "schemaversion": _integer(record.schema_version),
        "position": str(record.position),
        "transactionid": str(record.transaction_id),
    }
    rest: dict[str, Any] = {}
    for key, value in record.metadata.items():
        attribute = _LIFTED.get(key)
        if attribute is not None and isinstance(value, str):
            cloudevent[attribute] = value
        elif key == ORIGIN and _is_origin(value):
            cloudevent.update(_origin_attributes(value, record))
        else:
            rest[key] = value
    if rest:
        cloudevent["metadata"] = json.dumps(rest, separators=(",", ":"), sort_keys=True)
    cloudevent["data"] = record.data
    return cloudevent


def to_cloudevent_json(
    record: RecordedEvent, *, source: str = DEFAULT_SOURCE, type_prefix: str = ""
) -> bytes:
    """The record as CloudEvents JSON text (UTF-8), the body of a structured-mode message."""
    return json.dumps(
        to_cloudevent(record, source=source, type_prefix=type_prefix),
        separators=(",", ":"), ensure_ascii=False,
    ).encode()


def from_cloudevent(
    cloudevent: Mapping[str, Any] | str | bytes, *, type_prefix: str = ""
) -> RecordedEvent:
    """The ``RecordedEvent`` a CloudEvent written by ``to_cloudevent`` carries.

    Raises ``CloudEventError`` naming the missing or malformed attribute (a CloudEvent from
    another producer lacks the envelope's positions: use ``import_cloudevent`` for it).
    """
    ce = _mapping(cloudevent)
    imported = "eventid" in ce  # an event this store imported: its origin's id and time
    event_id = ce.get("eventid" if imported else "id")
    if not isinstance(event_id, str):
        raise CloudEventError("attribute 'id' is missing or not a string")
    try:
        parsed_id = uuid.UUID(event_id)
    except ValueError:
        raise CloudEventError(f"id {event_id!r} is not a UUID", event_id) from None
    metadata = _metadata(ce, event_id)
    if imported:
        metadata[ORIGIN] = _origin(ce)
    return RecordedEvent(
        event_id=parsed_id,
        stream_id=_subject(ce, event_id),
        stream_version=_number(ce, "streamversion", event_id),
        transaction_id=_number(ce, "transactionid", event_id),
        position=_number(ce, "position", event_id),
        event_type=_type(ce, type_prefix, event_id),
        schema_version=_number(ce, "schemaversion", event_id, default=1),
        data=_data(ce, event_id),
        metadata=metadata,
        recorded_at=_time(ce, event_id, "recordedat" if imported else "time"),
    )


def import_cloudevent(
    cloudevent: Mapping[str, Any] | str | bytes,
    registry: EventRegistry,
    *,
    type_prefix: str = "",
) -> tuple[str, NewEvent]:
    """The stream id (``subject``) and the ``NewEvent`` to append for a CloudEvent.

    The data is upcast to the registered version and validated into the event class;
    the id is kept (a non-UUID id of another producer maps to a stable UUID), so importing
    the same CloudEvent twice appends it once. Metadata and correlation come along.
    """
    ce = _mapping(cloudevent)
    raw_id = ce.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        raise CloudEventError("attribute 'id' is missing or not a string")
    try:
        event_id = uuid.UUID(raw_id)
    except ValueError:
        event_id = uuid.uuid5(_FOREIGN_IDS, f"{ce.get('source')}\x00{raw_id}")
    if "time" in ce:
        _time(ce, raw_id)  # a malformed time is refused, not carried along
    metadata = _metadata(ce, raw_id)
    metadata[ORIGIN] = _origin(ce)
    stored = RecordedEvent(
        event_id=event_id,
        stream_id=_subject(ce, raw_id),
        stream_version=0,
        transaction_id=0,
        position=0,
        event_type=_type(ce, type_prefix, raw_id),
        schema_version=_number(ce, "schemaversion", raw_id, default=1),
        data=_data(ce, raw_id),
        metadata=metadata,
        recorded_at=datetime.now(UTC),
    )
    try:
        upcast = registry.upcast(stored)
        if len(upcast) != 1:
            raise CloudEventError(
                f"an upcaster turns {stored.event_type!r} v{stored.schema_version} into "
                f"{len(upcast)} events; import the stored events of the split instead",
                raw_id,
            )
        event = registry.decode(upcast[0])
    except CloudEventError:
        raise
    except EventfoldError as exc:
        raise CloudEventError(
            f"its {stored.event_type!r} v{stored.schema_version} data does not fit this "
            f"application's events: {_unfit(exc)}",
            raw_id,
        ) from exc
    return stored.stream_id, NewEvent(event, event_id=event_id, metadata=stored.metadata)


# -- reading attributes -----------------------------------------------------------------


def _mapping(cloudevent: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(cloudevent, (str, bytes)):
        try:
            cloudevent = json.loads(cloudevent)
        except ValueError as exc:
            raise CloudEventError(f"the body is not JSON ({exc})") from None
    if not isinstance(cloudevent, Mapping):
        raise CloudEventError(f"expected a JSON object, got {type(cloudevent).__name__}")
    version = cloudevent.get("specversion")
    if version != SPEC_VERSION:
        raise CloudEventError(
            f"specversion is {version!r}, only {SPEC_VERSION!r} is supported", cloudevent.get("id")
        )
    if not isinstance(cloudevent.get("source"), str) or not cloudevent["source"]:
        raise CloudEventError("attribute 'source' is missing or empty", cloudevent.get("id"))
    return cloudevent


def _subject(ce: Mapping[str, Any], event_id: str) -> str:
    subject = ce.get("subject")
    if not isinstance(subject, str) or not subject:
        raise CloudEventError("attribute 'subject' (the stream id) is missing or empty", event_id)
    return subject


def _type(ce: Mapping[str, Any], prefix: str, event_id: str) -> str:
    value = ce.get("type")
    if not isinstance(value, str) or not value:
        raise CloudEventError("attribute 'type' is missing or empty", event_id)
    if prefix:
        if not value.startswith(prefix) or value == prefix:
            raise CloudEventError(f"type {value!r} does not start with {prefix!r}", event_id)
        value = value[len(prefix):]
    return value


def _number(
    ce: Mapping[str, Any], name: str, event_id: str, *, default: int | None = None
) -> int:
    value = ce.get(name)
    if value is None and default is not None:
        return default
    # Integers, or decimal Strings for values beyond the 32-bit CloudEvents Integer.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    what = "missing" if value is None else f"{value!r}, not an integer"
    raise CloudEventError(f"extension attribute {name!r} is {what}", event_id)


def _data(ce: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    if "data_base64" in ce:
        raise CloudEventError("binary data (data_base64) cannot be an event's data", event_id)
    content_type = ce.get("datacontenttype", JSON_CONTENT_TYPE)
    if not isinstance(content_type, str) or not _is_json(content_type):
        raise CloudEventError(f"datacontenttype {content_type!r} is not JSON", event_id)
    data = ce.get("data")
    if not isinstance(data, dict):
        raise CloudEventError("data is missing or not a JSON object", event_id)
    return data


def _metadata(ce: Mapping[str, Any], event_id: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    text = ce.get("metadata")
    if text is not None:
        try:
            decoded = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            raise CloudEventError("extension 'metadata' is not a JSON object in a string", event_id)
        metadata.update(decoded)
    for key, attribute in _LIFTED.items():
        value = ce.get(attribute)
        if isinstance(value, str):
            metadata[key] = value
    return metadata


def _time(ce: Mapping[str, Any], event_id: str, name: str = "time") -> datetime:
    value = ce.get(name)
    if not isinstance(value, str):
        raise CloudEventError(f"attribute {name!r} (a timestamp) is missing", event_id)
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise CloudEventError(
            f"{name} {value!r} is not an RFC 3339 timestamp (e.g. 2026-12-04T17:09:00Z)",
            event_id,
        )
    # Python keeps microseconds: finer fractions are cut, never rounded into the next second.
    fraction = (match["fraction"] or "")[:7]
    offset = "+00:00" if match["offset"] in "Zz" else match["offset"]
    text = value[: match.start("fraction") if match["fraction"] else match.start("offset")]
    return datetime.fromisoformat(text.replace("t", "T") + fraction + offset)


def _origin(ce: Mapping[str, Any]) -> dict[str, Any]:
    """What names an imported event where it came from (kept, and sent on, unchanged)."""
    origin: dict[str, Any] = {"id": ce["id"], "source": ce["source"]}
    for name in ("time", "dataschema"):
        if isinstance(ce.get(name), str):
            origin[name] = ce[name]
    extensions = {name: value for name, value in ce.items() if name not in _KNOWN}
    if extensions:
        origin["extensions"] = extensions
    return origin


def _is_origin(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("source"), str)
    )


def _origin_attributes(origin: dict[str, Any], record: RecordedEvent) -> dict[str, Any]:
    """An imported event's origin as CloudEvents attributes, with eventfold's own id and
    time of it in ``eventid`` and ``recordedat``."""
    attributes: dict[str, Any] = dict(origin.get("extensions") or {})
    attributes.update(
        id=origin["id"], source=origin["source"], eventid=str(record.event_id),
        recordedat=_rfc3339(record.recorded_at),
    )
    for name in ("time", "dataschema"):
        if name in origin:
            attributes[name] = origin[name]
    return attributes


def _unfit(exc: EventfoldError) -> str:
    """Why an incoming event's data does not fit, without the stored-event framing."""
    if isinstance(exc, UnknownEventType):
        return (
            f"no event class is registered as {exc.event_type!r} v{exc.version}: register "
            "one, or an upcaster from that version"
        )
    cause = exc.__cause__
    if isinstance(exc, EventDecodeError) and cause is not None:
        lines = [line.strip() for line in str(cause).strip().splitlines()]
        return "the data does not validate: " + "; ".join(lines[1:3] or lines[:1])
    return str(exc)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"recorded_at {moment!r} has no time zone; stores stamp UTC times")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _integer(value: int) -> int | str:
    return value if -_INT32_MAX - 1 <= value <= _INT32_MAX else str(value)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or media.endswith("+json")
