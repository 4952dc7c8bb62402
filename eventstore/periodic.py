"""How eventfold runs periodic work: one interval job on an APScheduler ``AsyncIOScheduler``.

The snapshot sweep, the inbox prune and the deadline poller are each added by ``every``, so
they behave alike: runs never overlap (a run still going when the next is due skips that
turn), missed runs coalesce into one, and adding a job under an id already scheduled
replaces it rather than doubling the work. APScheduler is the client's choice (DESIGN.md);
the scheduler is the application's. It lives beside the store, as ``Backoff`` does, because
the snapshot sweep sits below every other user of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler



def every(
    scheduler: AsyncIOScheduler,
    seconds: float,
    work: Callable[[], Awaitable[None]],
    *,
    id: str,
    first_run_now: bool = False,
) -> Any:
    """Run ``work`` every ``seconds`` on ``scheduler`` (first after ``seconds``, or at once
    with ``first_run_now``); returns the APScheduler job."""
    # APScheduler reads next_run_time=None as "add it paused": leave it out instead.
    first: dict[str, Any] = {"next_run_time": datetime.now(UTC)} if first_run_now else {}
    return scheduler.add_job(
        work, "interval", seconds=seconds, id=id, max_instances=1, coalesce=True,
        replace_existing=True, **first,
    )
