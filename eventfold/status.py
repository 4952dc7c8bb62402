"""What ``eventfold projections status`` reports: each subscriber's status, on PostgreSQL
the sessions whose old open transactions hold every reader of the global log back, and the
backlog of the App's broker consumers per partition.

Readers of the PostgreSQL log see only events committed below the oldest open write
transaction (docs/operations.md), so a session left "idle in transaction" stalls every
projection without any of them showing an error; naming it is the fastest diagnosis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from eventfold.app import Running
from eventfold.eventstore import HorizonHolder
from eventfold.messaging.errors import BrokerUnavailable
from eventfold.messaging.inbox import BrokerConsumer, PartitionLag
from eventfold.projections import ProjectionStatus, Subscriber, status

DEFAULT_HORIZON_AGE = timedelta(seconds=5)
"""An open write transaction older than this is reported as holding readers back."""


@dataclass(frozen=True, slots=True)
class ConsumerBacklog:
    """A broker consumer's lag per partition, or why the broker could not tell."""

    name: str
    partitions: list[PartitionLag]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The status of an application's subscribers and what holds their readers back."""

    projections: list[ProjectionStatus]
    horizon_holders: list[HorizonHolder]
    """Sessions (oldest first) whose open write transaction is older than the threshold;
    always empty off PostgreSQL."""
    consumers: list[ConsumerBacklog] = field(default_factory=list)
    """The App's broker consumers (``App(consumers=...)``), when no names were asked for."""


async def status_report(
    running: Running,
    *,
    names: Iterable[str] | None = None,
    horizon_age: timedelta = DEFAULT_HORIZON_AGE,
) -> StatusReport:
    """The status of the App's subscribers (all, or those ``names``d, in that order) and
    the sessions holding the log's horizon back for longer than ``horizon_age``."""
    subscribers: list[Subscriber] = (
        running.app.all_subscribers() if names is None
        else [running.app.subscriber(name) for name in names]
    )
    found = await status(running.store, running.engine, subscribers)
    holders = [
        holder for holder in await running.store.horizon_holders()
        if holder.transaction_age >= horizon_age
    ]
    consumers = [await _backlog(consumer) for consumer in running.app.consumers] if (
        names is None
    ) else []
    return StatusReport(found, holders, consumers)


async def _backlog(consumer: BrokerConsumer) -> ConsumerBacklog:
    try:
        return ConsumerBacklog(consumer.name, await consumer.backlog())
    except BrokerUnavailable as exc:
        return ConsumerBacklog(consumer.name, [], str(exc))


__all__ = ["DEFAULT_HORIZON_AGE", "ConsumerBacklog", "StatusReport", "status_report"]


def duration(seconds: float | None) -> str:
    """``4.2s``, ``42s``, ``3m05s``, ``2h07m``: short enough for a table cell."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
