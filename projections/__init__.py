"""Projections and the runner: read models fed from the global log, exactly once.

Subclass ``Projection``, register instances in a ``ProjectionRegistry``, run them with a
``Runner``; rebuild with ``rebuild`` (change a process manager's or relay's partition count
with ``repartition``), inspect with ``status`` and the parked-event functions.
Every subscriber (projection, process manager, relay) implements ``Subscriber``.
"""

from eventfold.projections.checkpoints import Checkpoint
from eventfold.projections.errors import (
    CheckpointMoved,
    DuplicateProjection,
    ParkedEventNotFound,
    PartitionsChanged,
    ProjectionDefinitionError,
    ProjectionError,
    ProjectionHalted,
    ProjectionHeld,
    RebuildError,
    RebuildParked,
    RepartitionRefused,
    SubscriberUnavailable,
    UnknownProjection,
)
from eventfold.projections.leases import LeaseInfo, default_holder
from eventfold.projections.parked import RetryResult, list_parked, retry_parked, skip_parked
from eventfold.projections.parking import ParkedEvent
from eventfold.projections.projection import (
    Projection,
    ProjectionContext,
    ProjectionRegistry,
    ReadModel,
    handles,
)
from eventfold.projections.rebuild import REBUILD_SUFFIX, RebuildProgress, rebuild, reset
from eventfold.projections.repartition import repartition
from eventfold.projections.runner import Runner, SubscriberState
from eventfold.projections.status import ProjectionStatus, status
from eventfold.projections.subscriber import (
    BatchContext,
    Delivery,
    FailurePolicy,
    OnFailure,
    Subscriber,
)
from eventfold.projections.subscription import Subscription

__all__ = [
    "REBUILD_SUFFIX",
    "BatchContext",
    "Checkpoint",
    "CheckpointMoved",
    "Delivery",
    "DuplicateProjection",
    "FailurePolicy",
    "LeaseInfo",
    "OnFailure",
    "ParkedEvent",
    "ParkedEventNotFound",
    "PartitionsChanged",
    "Projection",
    "ProjectionContext",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionHalted",
    "ProjectionHeld",
    "ProjectionRegistry",
    "ProjectionStatus",
    "ReadModel",
    "RebuildError",
    "RebuildParked",
    "RebuildProgress",
    "RepartitionRefused",
    "RetryResult",
    "Runner",
    "Subscriber",
    "SubscriberState",
    "SubscriberUnavailable",
    "Subscription",
    "UnknownProjection",
    "default_holder",
    "handles",
    "list_parked",
    "rebuild",
    "repartition",
    "reset",
    "retry_parked",
    "skip_parked",
    "status",
]
