"""Hooks for tracing and metrics: a no-op until an ``Instrument`` is installed.

The packages call these hooks around appends, aggregate loads, subscriber batches and event
handling; ``eventfold.projections.observability`` installs an instrument that turns them into
OpenTelemetry spans and Prometheus metrics. With nothing installed every hook is one
global lookup and nothing is imported: the optional extras cost nothing when absent.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar, cast

from eventfold.eventstore.records import GlobalPosition, RecordedEvent

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_NOTHING: AbstractContextManager[None] = nullcontext()


class Instrument:
    """What the hooks call; every method does nothing here. Subclass to observe."""

    def span(self, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
        """A span around an operation (an aggregate load)."""
        return _NOTHING

    def append(self, stream_id: str, count: int) -> AbstractContextManager[Any]:
        """Around one append of ``count`` events (trace context is injected inside it)."""
        return _NOTHING

    def batch(
        self, subscriber: str, records: Sequence[RecordedEvent], head: GlobalPosition
    ) -> AbstractContextManager[Any]:
        """Around one subscriber batch (its transaction), ``head`` the log's end then."""
        return _NOTHING

    def handling(self, subscriber: str, record: RecordedEvent) -> AbstractContextManager[Any]:
        """Around the handling of one event: the place to continue the event's trace."""
        return _NOTHING

    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the current span, to store in appended events."""
        return None


_active: Instrument | None = None


def install(instrument: Instrument | None) -> Instrument | None:
    """Make ``instrument`` the active one (None: back to no-ops); returns the previous."""
    global _active
    previous, _active = _active, instrument
    return previous


def active() -> Instrument | None:
    """The installed instrument, if any."""
    return _active


def span(name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[Any]:
    """A span named ``name`` when an instrument is installed."""
    return _NOTHING if _active is None else _active.span(name, attributes)


def batch(
    subscriber: str, records: Sequence[RecordedEvent], head: GlobalPosition
) -> AbstractContextManager[Any]:
    """The hook around a subscriber batch."""
    return _NOTHING if _active is None else _active.batch(subscriber, records, head)


def handling(subscriber: str, record: RecordedEvent) -> AbstractContextManager[Any]:
    """The hook around the handling of one event."""
    return _NOTHING if _active is None else _active.handling(subscriber, record)


def traceparent() -> str | None:
    """The current span's ``traceparent`` (None without an instrument or a span)."""
    return None if _active is None else _active.traceparent()


def traced_append(method: F) -> F:
    """Decorate a backend's ``append``: the ``append`` hook wraps it when installed."""

    @functools.wraps(method)
    async def append(self: Any, stream_id: str, events: Sequence[Any], **options: Any) -> Any:
        instrument = _active
        if instrument is None:
            return await method(self, stream_id, events, **options)
        with instrument.append(stream_id, len(events)):
            return await method(self, stream_id, events, **options)

    return cast(F, append)


def traced(
    name: str, attributes: Callable[..., Mapping[str, Any]]
) -> Callable[[F], F]:
    """Decorate a coroutine method with a span ``name`` whose attributes are computed from
    its arguments (only when an instrument is installed)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            instrument = _active
            if instrument is None:
                return await method(*args, **kwargs)
            with instrument.span(name, attributes(*args, **kwargs)):
                return await method(*args, **kwargs)

        return cast(F, call)

    return decorate
