"""Projections and the runner: read models fed from the global log, exactly once.

Subclass ``Projection``, register instances in a ``ProjectionRegistry``, run them with a
``Runner``; rebuild with ``rebuild``, inspect with ``status`` and the parked-event functions.
Every subscriber (projection, process manager, relay) implements ``Subscriber``.
"""

from projections.checkpoints import Checkpoint
from projections.deadlines import Deadline, DeadlinePoller, list_deadlines
from projections.errors import (
    CheckpointMoved,
    DuplicateProjection,
    ParkedEventNotFound,
    ProjectionDefinitionError,
    ProjectionError,
    ProjectionHalted,
    ProjectionHeld,
    RebuildError,
    UnknownProjection,
)
from projections.leases import LeaseInfo, default_holder
from projections.parked import RetryResult, list_parked, retry_parked, skip_parked
from projections.parking import ParkedEvent
from projections.process_manager import (
    ProcessContext,
    ProcessInstance,
    ProcessManager,
    Step,
    compensation,
    on,
    on_timeout,
)
from projections.projection import (
    Projection,
    ProjectionContext,
    ProjectionRegistry,
    ReadModel,
    handles,
)
from projections.rebuild import RebuildProgress, rebuild, reset
from projections.runner import Runner, SubscriberState
from projections.status import ProjectionStatus, status
from projections.subscriber import (
    BatchContext,
    Delivery,
    FailurePolicy,
    OnFailure,
    Subscriber,
)
from projections.subscription import Subscription

__all__ = [
    "BatchContext",
    "Checkpoint",
    "CheckpointMoved",
    "Deadline",
    "DeadlinePoller",
    "Delivery",
    "DuplicateProjection",
    "FailurePolicy",
    "LeaseInfo",
    "OnFailure",
    "ParkedEvent",
    "ParkedEventNotFound",
    "ProcessContext",
    "ProcessInstance",
    "ProcessManager",
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
    "RebuildProgress",
    "RetryResult",
    "Runner",
    "Step",
    "Subscriber",
    "SubscriberState",
    "Subscription",
    "UnknownProjection",
    "compensation",
    "default_holder",
    "handles",
    "list_deadlines",
    "list_parked",
    "on",
    "on_timeout",
    "rebuild",
    "reset",
    "retry_parked",
    "skip_parked",
    "status",
]
