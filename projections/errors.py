"""Errors of projections and the runner: each says what went wrong and what to do."""

from __future__ import annotations

from eventstore.errors import EventfoldError


class ProjectionError(EventfoldError):
    """Base of the errors about projections, subscribers and the runner."""


class ProjectionDefinitionError(ProjectionError, TypeError):
    """A projection class is declared wrongly (no name, a bad handler, clashing tables)."""


class DuplicateProjection(ProjectionError, ValueError):
    """Two projections were registered under one name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"a projection named {name!r} is already registered: give one of them another "
            "`name` (names are stored with checkpoints and must stay stable)"
        )


class UnknownProjection(ProjectionError, LookupError):
    """A projection was asked for by a name nobody registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            f"no projection named {name!r} is registered (known: {', '.join(known) or 'none'}): "
            "check the name or register the projection with the application"
        )


class ProjectionHalted(ProjectionError):
    """A subscriber with the "halt" failure policy stopped on a failing event."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(
            f"{name!r} is halted: {reason}. Fix the cause, then retry or skip its parked "
            f"event (`eventfold projections parked {name}`, `... retry`, `... skip`)"
        )


class CheckpointMoved(ProjectionError):
    """The checkpoint was not where this holder left it: another holder (or a rebuild or
    reset) moved it, so this batch was rolled back and nothing of it was committed."""

    def __init__(self, name: str, expected: object, actual: object) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"the checkpoint of {name!r} is at {actual}, this holder expected {expected}: "
            "the batch was rolled back; the runner reloads the checkpoint and goes on"
        )


class ProjectionHeld(ProjectionError):
    """Another runner (or rebuild) holds what was asked for."""

    def __init__(self, name: str, holder: str) -> None:
        self.name = name
        self.holder = holder
        super().__init__(
            f"{name!r} is held by {holder}: wait for it to finish or stop that process "
            "(a dead holder's lease expires within seconds)"
        )


class ParkedEventNotFound(ProjectionError, LookupError):
    """A parked event was asked for that is not parked (any more)."""

    def __init__(self, name: str, event_id: object) -> None:
        self.name = name
        self.event_id = event_id
        super().__init__(
            f"event {event_id} is not parked for {name!r}: "
            f"`eventfold projections parked {name}` lists what is"
        )


class RebuildError(ProjectionError):
    """A rebuild could not be done as asked; the live read model is untouched."""


class ProcessManagerError(ProjectionError):
    """Base of the errors about process managers (sagas) and their deadlines."""


class ProcessDefinitionError(ProcessManagerError, TypeError):
    """A process manager class is declared wrongly (no name, no key, a bad handler)."""


class ProcessStateConflict(ProcessManagerError):
    """A process instance's state changed under this writer (compare-and-set failed)."""

    def __init__(self, manager: str, key: str, expected: int) -> None:
        self.manager = manager
        self.key = key
        self.expected = expected
        super().__init__(
            f"the state of {manager!r} instance {key!r} is no longer at version {expected}: "
            "another writer changed it; the batch is rolled back and retried"
        )


class MissingCorrelationKey(ProcessManagerError, LookupError):
    """A handled event or timeout message does not carry the process manager's key."""

    def __init__(self, manager: str, message: str, key: str) -> None:
        self.manager = manager
        self.message = message
        self.key = key
        super().__init__(
            f"{manager!r} correlates by {key!r} but {message} has no such field: add it to "
            "the event, or pass key=... to @on(...) to say how to take the key from it"
        )


class SubscriberUnavailable(ProjectionError):
    """Something a subscriber depends on outside the database (a broker) is unreachable.

    Raised from ``handle_batch``, it is not the event's fault: the runner neither retries
    nor parks the event, it rolls the whole batch back (the checkpoint stays) and tries the
    batch again after its error backoff, so an outage never skips or parks an event.
    """


class BrokerUnavailable(SubscriberUnavailable):
    """A message broker could not be reached, or did not confirm in time."""

    def __init__(self, broker: str, reason: str) -> None:
        self.broker = broker
        self.reason = reason
        super().__init__(
            f"{broker} is unavailable ({reason}): check that the broker runs and the URL "
            "is right (a relay retries its batch from the same checkpoint; nothing is skipped)"
        )


class MessageRejected(ProjectionError):
    """A broker refused one message (a nack, an error reply): retried, then parked."""

    def __init__(self, broker: str, message_id: object, reason: str) -> None:
        self.broker = broker
        self.message_id = message_id
        self.reason = reason
        super().__init__(
            f"{broker} refused message {message_id} ({reason}); it is retried and then "
            "parked: fix the broker's configuration, then retry the parked event"
        )


class ProcessBatchStale(SubscriberUnavailable):
    """On SQLite a process manager decides (and sends its commands) before the batch's
    transaction, which holds the database's one write lock; when that decision no longer
    fits the stored state, the batch is rolled back and read again (nothing is parked)."""

    def __init__(self, manager: str, key: str, detail: str) -> None:
        self.manager = manager
        self.key = key
        super().__init__(
            f"{manager!r} instance {key!r}: {detail}; the batch is rolled back and handled "
            "again from the same checkpoint (run one runner process per SQLite database)"
        )
