"""Errors of the write model: aggregate definitions, loading, and domain rule violations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from eventfold.eventstore.errors import EventfoldError


class AggregateError(EventfoldError):
    """Base of the errors the aggregates package raises."""


class DomainError(AggregateError):
    """Base for the errors a command raises when it would break an invariant.

    Subclass it for your domain's rules (``class OrderAlreadyShipped(DomainError)``); a
    command that raises records nothing.
    """


class AggregateDefinitionError(AggregateError, TypeError):
    """An ``Aggregate`` subclass is declared wrongly; raised when the class is created or first
    used, so the mistake shows before any event is stored."""


class MissingHandler(AggregateDefinitionError):
    """An event was recorded or loaded for an aggregate with no handler for its type."""

    def __init__(self, aggregate: type, event_type: type) -> None:
        self.aggregate = aggregate
        self.event_type = event_type
        super().__init__(
            f"{aggregate.__qualname__} has no handler for {event_type.__qualname__}: add a "
            f"method decorated with @applies({event_type.__qualname__}) (it may do nothing)"
        )


class UnregisteredHandlerEvents(AggregateDefinitionError):
    """An aggregate handles event types the store's registry does not know."""

    def __init__(self, aggregate: type, event_types: Iterable[type]) -> None:
        self.aggregate = aggregate
        self.event_types = tuple(event_types)
        names = ", ".join(sorted(cls.__qualname__ for cls in self.event_types))
        super().__init__(
            f"{aggregate.__qualname__} handles event types the registry does not know: {names}; "
            "register them (registry.register(...)) before using the aggregate with this store"
        )


class AggregateNotFound(AggregateError, LookupError):
    """The aggregate's stream has no events (at the requested version or time)."""

    def __init__(
        self,
        aggregate: type,
        aggregate_id: str,
        stream_id: str,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.stream_id = stream_id
        self.version = version
        self.as_of = as_of
        when = ""
        if version is not None:
            when += f" at version {version}"
        if as_of is not None:
            when += f" as of {as_of.isoformat()}"
        super().__init__(
            f"{aggregate.__qualname__} {aggregate_id!r} not found: stream {stream_id!r} has no "
            f"events{when}; create it first (Repository.create) or check the id"
        )


class AggregateExists(AggregateError):
    """``Repository.create`` found events already stored for the aggregate's stream."""

    def __init__(self, aggregate: type, aggregate_id: str, stream_id: str, version: int) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.stream_id = stream_id
        self.version = version
        super().__init__(
            f"{aggregate.__qualname__} {aggregate_id!r} already exists (stream {stream_id!r} is "
            f"at version {version}): load it with Repository.get or Repository.update instead"
        )


class SnapshotStateError(AggregateError, ValueError):
    """A snapshot's state does not fit the aggregate class (corrupt, or from another shape)."""

    def __init__(self, aggregate: type, stream_id: str, detail: str) -> None:
        self.aggregate = aggregate
        self.stream_id = stream_id
        self.detail = detail
        super().__init__(
            f"snapshot state of {stream_id!r} does not fit {aggregate.__qualname__}: {detail}; "
            f"raise {aggregate.__qualname__}.state_version when the state's shape changes so "
            "old snapshots are ignored"
        )
