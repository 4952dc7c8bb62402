"""The write model: aggregates, their repository, and given/when/then specifications."""

from eventfold.aggregates.aggregate import Aggregate, applies, check_aggregate
from eventfold.aggregates.errors import (
    AggregateDefinitionError,
    AggregateError,
    AggregateExists,
    AggregateNotFound,
    DomainError,
    MissingHandler,
    SnapshotStateError,
    UnregisteredHandlerEvents,
)
from eventfold.aggregates.repository import AggregateCommand, Command, Repository
from eventfold.aggregates.testing import Scenario, scenario

__all__ = [
    "Aggregate",
    "AggregateCommand",
    "AggregateDefinitionError",
    "AggregateError",
    "AggregateExists",
    "AggregateNotFound",
    "Command",
    "DomainError",
    "MissingHandler",
    "Repository",
    "Scenario",
    "SnapshotStateError",
    "UnregisteredHandlerEvents",
    "applies",
    "check_aggregate",
    "scenario",
]
