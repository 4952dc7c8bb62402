"""Process managers (sagas): state kept per instance, commands sent, compensation, and
durable deadlines that survive restarts.

Subclass ``ProcessManager``, mark its handlers with ``on``, ``on_timeout`` and
``compensation``, and register it with the application like a projection: the runner feeds
it the global log. A ``DeadlinePoller`` fires the deadlines that fall due.
"""

from eventfold.processes.deadlines import Deadline, DeadlinePoller, list_deadlines
from eventfold.processes.errors import (
    MissingCorrelationKey,
    ProcessBatchStale,
    ProcessDefinitionError,
    ProcessManagerError,
    ProcessStateConflict,
)
from eventfold.processes.process_manager import (
    ProcessContext,
    ProcessInstance,
    ProcessManager,
    Step,
    compensation,
    on,
    on_timeout,
)
from eventfold.processes.unit_of_work import SentCommand, UnitOfWork

__all__ = [
    "Deadline",
    "DeadlinePoller",
    "MissingCorrelationKey",
    "ProcessBatchStale",
    "ProcessContext",
    "ProcessDefinitionError",
    "ProcessInstance",
    "ProcessManager",
    "ProcessManagerError",
    "ProcessStateConflict",
    "SentCommand",
    "Step",
    "UnitOfWork",
    "compensation",
    "list_deadlines",
    "on",
    "on_timeout",
]
