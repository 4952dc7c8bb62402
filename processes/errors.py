"""Errors of process managers (sagas) and their durable deadlines."""

from __future__ import annotations

from eventfold.projections.errors import ProjectionError, SubscriberUnavailable


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
