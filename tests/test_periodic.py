"""Periodic work: one APScheduler interval job per task, added the same way for all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from eventfold.eventstore.periodic import every


async def nothing() -> None:
    """A job that does nothing."""


async def test_jobs_never_overlap_coalesce_and_replace_their_namesake() -> None:
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    try:
        every(scheduler, 60, nothing, id="eventfold-test")
        job = every(scheduler, 30, nothing, id="eventfold-test")
        (only,) = scheduler.get_jobs()
        assert only.id == job.id == "eventfold-test"
        assert (only.max_instances, only.coalesce) == (1, True)
        assert only.trigger.interval == timedelta(seconds=30)
    finally:
        scheduler.shutdown(wait=False)


async def test_first_run_after_an_interval_or_at_once_never_paused() -> None:
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    try:
        before = datetime.now(UTC)
        later = every(scheduler, 60, nothing, id="eventfold-later")
        now = every(scheduler, 60, nothing, id="eventfold-now", first_run_now=True)
        assert later.next_run_time >= before + timedelta(seconds=59)
        assert now.next_run_time <= datetime.now(UTC)
    finally:
        scheduler.shutdown(wait=False)
