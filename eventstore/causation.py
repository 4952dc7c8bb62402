"""Correlation and causation ids that propagate without the user's help.

Whatever handles an event (a projection's command, a process manager, a consumer) runs
inside ``caused_by(record)``; every event appended in that context takes the handled
event's id as ``causation_id`` and inherits its ``correlation_id`` (the causing event's own
id when it had none), and its ``traceparent``. At the edge of the system,
``correlated(correlation_id)`` sets the correlation id for everything appended within.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from eventfold.eventstore.instrumentation import traceparent
from eventfold.eventstore.records import RecordedEvent


@dataclass(frozen=True, slots=True)
class _Cause:
    correlation_id: str | None
    causation_id: str | None
    traceparent: str | None


_cause: ContextVar[_Cause | None] = ContextVar("eventfold_cause", default=None)


@contextmanager
def caused_by(record: RecordedEvent) -> Iterator[None]:
    """Events appended inside this block are caused by ``record``."""
    correlation = record.metadata.get("correlation_id") or str(record.event_id)
    token = _cause.set(
        _Cause(str(correlation), str(record.event_id), record.metadata.get("traceparent"))
    )
    try:
        yield
    finally:
        _cause.reset(token)


@contextmanager
def correlated(correlation_id: str, traceparent: str | None = None) -> Iterator[None]:
    """Events appended inside this block share ``correlation_id`` (e.g. a request id)."""
    token = _cause.set(_Cause(correlation_id, None, traceparent))
    try:
        yield
    finally:
        _cause.reset(token)


def stamped(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The metadata with the current correlation, causation and trace context filled in.

    Values the caller set explicitly win.
    """
    cause = _cause.get()
    # The current span (when tracing is on) continues the trace better than the cause's.
    current = traceparent()
    if cause is None:
        if current is None:
            return metadata
        cause = _Cause(None, None, None)
    stamped = {
        key: value
        for key, value in (
            ("correlation_id", cause.correlation_id),
            ("causation_id", cause.causation_id),
            ("traceparent", current or cause.traceparent),
        )
        if value is not None
    }
    stamped.update(metadata)
    return stamped
