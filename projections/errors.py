"""Errors of projections and the runner: each says what went wrong and what to do."""

from __future__ import annotations

from eventfold.eventstore.errors import EventfoldError


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


class RebuildParked(RebuildError):
    """A rebuild's replay parked events: a read model missing them is not put in service.

    Blue/green: the shadow tables and their parked events are kept for inspection (under
    ``<name>#rebuild``), the live read model stays. In place: the tables were already
    replaced, so the command fails to say the new model lacks the parked events.
    """

    def __init__(self, name: str, parked: int, *, in_place: bool) -> None:
        self.name = name
        self.parked = parked
        self.in_place = in_place
        if in_place:
            where, listed = "the read model was rebuilt in place without them", name
        else:
            listed = name + "#rebuild"
            where = (
                "the live read model is untouched and the shadow tables are kept for "
                "inspection"
            )
        super().__init__(
            f"the rebuild of {name!r} parked {parked} event(s): {where}. See them with "
            f"`eventfold projections parked {listed}`; fix the cause (an upcaster, the "
            "handler) and rebuild, or rebuild with --allow-parked (allow_parked=True) to "
            "accept a read model without them"
        )


class SubscriberUnavailable(ProjectionError):
    """Something a subscriber depends on outside the database (a broker) is unreachable.

    Raised from ``handle_batch``, it is not the event's fault: the runner neither retries
    nor parks the event, it rolls the whole batch back (the checkpoint stays) and tries the
    batch again after its error backoff (growing, with jitter, while the outage lasts),
    so an outage never skips or parks an event.
    """


class PartitionsChanged(ProjectionError):
    """A subscriber declares another partition count than its checkpoints were stored with."""

    def __init__(self, name: str, stored: int, declared: int, *, rebuild: bool = True) -> None:
        self.name = name
        self.stored = stored
        self.declared = declared
        how = (
            f"run `eventfold projections rebuild {name}` to change the count" if rebuild
            else f"stop its runners once caught up, then run `eventfold projections "
            f"repartition {name}` to change the count"
        )
        super().__init__(
            f"{name!r} declares {declared} partition(s) but its checkpoints are stored with "
            f"{stored}: {how}"
        )


class RepartitionRefused(ProjectionError):
    """A subscriber's partition count cannot change now (``repartition``); nothing changed."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot change the partition count of {name!r}: {reason}")
