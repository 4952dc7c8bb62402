"""The scheduled sweep: snapshot streams whose tail since their last snapshot grew long.

The sweep knows no aggregate classes (``snapshots`` sits below ``aggregates``): it takes a
``take`` function that folds a stream and returns its snapshot (``None`` for streams it
does not snapshot). ``eventfold`` builds that function from the application's aggregates.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventfold.eventstore import EventStore
from eventfold.eventstore.periodic import every
from eventfold.snapshots.protocol import Snapshot
from eventfold.snapshots.storage import SnapshotStorage

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger("eventfold.snapshots")

TakeSnapshot = Callable[[str], Awaitable[Snapshot | None]]
"""Folds the stream with this id and returns its snapshot, or None to leave it alone."""


@dataclass
class SweepReport:
    """What one sweep looked at and what it took."""

    examined: int = 0
    taken: list[Snapshot] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


async def sweep(
    store: EventStore,
    snapshots: SnapshotStorage,
    take: TakeSnapshot,
    *,
    threshold: int,
    categories: Collection[str] | None = None,
    page_size: int = 500,
) -> SweepReport:
    """Snapshot every stream (of ``categories``, or all) with at least ``threshold`` events
    since its newest snapshot. A stream that fails to fold is reported, not fatal."""
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    report = SweepReport()
    for category in list(categories) if categories is not None else [None]:
        after: str | None = None
        while page := await store.list_streams(category=category, after=after, limit=page_size):
            after = page[-1].stream_id
            report.examined += len(page)
            snapshotted = await snapshots.latest_versions([s.stream_id for s in page])
            for stream in page:
                if stream.version - snapshotted.get(stream.stream_id, 0) < threshold:
                    continue
                try:
                    snapshot = await take(stream.stream_id)
                except Exception as exc:  # one bad stream must not stop the sweep
                    logger.warning("could not snapshot %s: %s", stream.stream_id, exc)
                    report.failed[stream.stream_id] = str(exc)
                    continue
                if snapshot is not None:
                    await snapshots.save(snapshot)
                    report.taken.append(snapshot)
    return report


def schedule_sweep(
    scheduler: AsyncIOScheduler,
    store: EventStore,
    snapshots: SnapshotStorage,
    take: TakeSnapshot,
    *,
    threshold: int,
    every_seconds: float = 300,
    categories: Collection[str] | None = None,
) -> Any:
    """Add the sweep to an APScheduler ``AsyncIOScheduler`` (``eventstore.periodic.every``:
    runs never overlap). Returns the APScheduler job."""

    async def run() -> None:
        report = await sweep(store, snapshots, take, threshold=threshold, categories=categories)
        logger.info(
            "snapshot sweep examined %d streams, took %d snapshots, %d failed",
            report.examined, len(report.taken), len(report.failed),
        )

    return every(scheduler, every_seconds, run, id="eventfold-snapshot-sweep")
