"""Archiving one stream with progress: ``archive_stream`` in steps, a report after each
(``eventfold streams archive`` draws them as a progress bar with rate and ETA)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from eventfold.eventstore.archiving import ARCHIVE_BATCH, check_archive
from eventfold.eventstore.protocol import EventStore

STEP = 10 * ARCHIVE_BATCH
"""Events per ``archive_stream`` call between two reports (each call moves them in batches
of ``ARCHIVE_BATCH``, one short transaction each)."""


@dataclass(frozen=True, slots=True)
class ArchiveProgress:
    """How far an archive of one stream is: events moved of those to move, and since when."""

    stream_id: str
    moved: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        """Events moved per second so far."""
        return self.moved / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the rate so far (None before the first step)."""
        return (self.total - self.moved) / self.rate if self.rate > 0 else None


OnArchiveProgress = Callable[[ArchiveProgress], None]


async def archive_in_steps(
    store: EventStore,
    stream_id: str,
    *,
    before: int | None = None,
    dry_run: bool = False,
    on_progress: OnArchiveProgress | None = None,
) -> ArchiveProgress:
    """Archive the stream as ``store.archive_stream`` does, reporting after each step;
    ``dry_run`` moves nothing and reports how many events would move."""
    stream_id, before = check_archive(stream_id, before)
    started = time.monotonic()
    first = await store.read_stream(stream_id, limit=1)
    version = await store.stream_version(stream_id)
    low = first[0].stream_version if first else version
    end = version if before is None else min(before, version)
    total = max(0, end - low)
    done = ArchiveProgress(stream_id, 0, total, 0.0)
    if dry_run or total == 0:
        return done
    for upto in range(low + STEP, end + STEP, STEP):
        moved = done.moved + await store.archive_stream(stream_id, before=min(upto, end))
        done = ArchiveProgress(stream_id, moved, total, time.monotonic() - started)
        if on_progress is not None:
            on_progress(done)
    return done
