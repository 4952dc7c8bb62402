"""What ``eventfold projections status`` reports: each subscriber's status, and on PostgreSQL
the sessions whose old open transactions hold every reader of the global log back.

Readers of the PostgreSQL log see only events committed below the oldest open write
transaction (docs/operations.md), so a session left "idle in transaction" stalls every
projection without any of them showing an error; naming it is the fastest diagnosis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from eventfold.app import Running
from eventfold.eventstore import HorizonHolder
from eventfold.projections import ProjectionStatus, Subscriber, status

DEFAULT_HORIZON_AGE = timedelta(seconds=5)
"""An open write transaction older than this is reported as holding readers back."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The status of an application's subscribers and what holds their readers back."""

    projections: list[ProjectionStatus]
    horizon_holders: list[HorizonHolder]
    """Sessions (oldest first) whose open write transaction is older than the threshold;
    always empty off PostgreSQL."""


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
    return StatusReport(found, holders)


__all__ = ["DEFAULT_HORIZON_AGE", "StatusReport", "status_report"]


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
