"""Retention per category: events that outlived their policy go, by a scheduled job.

A ``Retention`` names a category, how long or how many of its streams' events to keep, and
what happens to the rest: ``"delete"`` (``truncate_stream`` before the first event kept, or
``delete_stream`` when none is kept) or ``"archive"`` (``archive_stream``). ``closed_by``
applies it only to finished streams: those whose last event is of one of those types.

``apply_retention`` works stream by stream, a page of streams at a time, each change its
own short transaction (never a wait with one open). Deletions and truncations carry the
version the policy looked at as their expected version: a stream that moved on since (a
new event, or another runner applying the same policy first) is left alone this turn and
counted as ``skipped``, so two runners at once, or a run again, change nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from eventfold.eventstore.errors import ConcurrencyError, InvalidRetention
from eventfold.eventstore.event import Event
from eventfold.eventstore.periodic import every
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import RecordedEvent, StreamInfo
from eventfold.eventstore.system_events import SYSTEM_EVENT_TYPES

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger("eventfold.retention")

Action = Literal["delete", "archive"]


@dataclass(frozen=True)
class Retention:
    """Keep a category's events for ``max_age`` and/or the last ``max_count`` of each
    stream; ``action`` says what happens to the others; ``closed_by`` limits the policy to
    streams whose last event is of one of those types (e.g. cancelled carts)."""

    category: str
    max_age: timedelta | None = None
    max_count: int | None = None
    action: Action = "delete"
    closed_by: Collection[type[Event]] = ()

    def __post_init__(self) -> None:
        what = f"Retention({self.category!r})"
        if not isinstance(self.category, str) or not self.category or "-" in self.category:
            raise InvalidRetention(
                f"{what}: category must be a stream category (the part of a stream id "
                "before its first '-', e.g. 'Cart')"
            )
        if self.max_age is None and self.max_count is None:
            raise InvalidRetention(f"{what}: give max_age, max_count or both")
        if self.max_age is not None and (
            not isinstance(self.max_age, timedelta) or self.max_age <= timedelta(0)
        ):
            raise InvalidRetention(f"{what}: max_age must be a positive timedelta")
        if self.max_count is not None and (
            isinstance(self.max_count, bool)
            or not isinstance(self.max_count, int)
            or self.max_count < 1
        ):
            raise InvalidRetention(f"{what}: max_count must be an int >= 1")
        if self.action not in ("delete", "archive"):
            raise InvalidRetention(f"{what}: action must be 'delete' or 'archive'")
        for cls in self.closed_by:
            if not (isinstance(cls, type) and issubclass(cls, Event)):
                raise InvalidRetention(f"{what}: closed_by takes event classes, got {cls!r}")

    def describe(self) -> str:
        """One line: what the policy keeps and what it does with the rest."""
        kept = [
            part
            for part in (
                None if self.max_age is None else f"max age {self.max_age}",
                None if self.max_count is None else f"last {self.max_count} events",
            )
            if part
        ]
        closed = (
            f", streams closed by {', '.join(sorted(c.event_type for c in self.closed_by))}"
            if self.closed_by
            else ""
        )
        return f"{self.category}: keep {' and '.join(kept)}{closed}, {self.action} the rest"


@dataclass(frozen=True)
class Expiry:
    """What a policy does (or, in a dry run, would do) to one stream: ``delete`` it,
    ``truncate`` or ``archive`` it before version ``before``; ``events`` is how many of its
    events go (for an archive: how many moved)."""

    stream_id: str
    action: Literal["delete", "truncate", "archive"]
    before: int
    events: int


@dataclass
class RetentionReport:
    """What one application of the policies looked at and did."""

    examined: int = 0
    expired: list[Expiry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Streams that moved on between the look and the change (left for the next run)."""

    def summary(self) -> str:
        """The run's one log line."""
        counts = {kind: 0 for kind in ("delete", "truncate", "archive")}
        events = 0
        for expiry in self.expired:
            counts[expiry.action] += 1
            events += expiry.events
        return (
            f"retention examined {self.examined} streams: deleted {counts['delete']}, "
            f"truncated {counts['truncate']}, archived {counts['archive']} "
            f"({events} events), skipped {len(self.skipped)}"
        )


async def apply_retention(
    store: EventStore,
    policies: Sequence[Retention],
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    page_size: int = 100,
    on_progress: Callable[[RetentionReport], None] | None = None,
) -> RetentionReport:
    """Apply every policy to its category's streams; ``dry_run`` changes nothing and lists
    what would go. ``now`` (default: the current time) is the clock max_age counts from.
    ``on_progress`` hears the report so far after each page of streams."""
    now = now if now is not None else datetime.now(UTC)
    if now.tzinfo is None:
        raise InvalidRetention(f"now={now!r} has no time zone: give an aware datetime")
    report = RetentionReport()
    for policy in policies:
        after: str | None = None
        while page := await store.list_streams(
            category=policy.category, after=after, limit=page_size
        ):
            after = page[-1].stream_id
            report.examined += len(page)
            for info in page:
                expiry = await _plan(store, policy, info, now)
                if expiry is None:
                    continue
                if dry_run:
                    report.expired.append(expiry)
                    continue
                try:
                    done = await _expire(store, expiry, info.version)
                except ConcurrencyError:
                    report.skipped.append(info.stream_id)
                    continue
                if done.events:
                    report.expired.append(done)
            if on_progress is not None:
                on_progress(report)
    return report


async def _plan(
    store: EventStore, policy: Retention, info: StreamInfo, now: datetime
) -> Expiry | None:
    """What the policy takes of one stream (None: nothing)."""
    if policy.closed_by:
        last = await _latest(store, info.stream_id, 1)
        closing = {cls.event_type for cls in policy.closed_by}
        if not last or last[0].event_type not in closing:
            return None
    keep_from = 1
    if policy.max_count is not None:
        kept = await _latest(store, info.stream_id, policy.max_count)
        if len(kept) == policy.max_count:
            keep_from = kept[-1].stream_version
    if policy.max_age is not None:
        cutoff = now - policy.max_age
        if info.updated_at <= cutoff:
            keep_from = info.version + 1
        else:
            old = await store.read_stream(info.stream_id, backwards=True, limit=1, as_of=cutoff)
            if old:
                keep_from = max(keep_from, old[0].stream_version + 1)
    first = await store.read_stream(info.stream_id, limit=1)
    if not first:
        return None  # nothing left to read (deleted, or every event gone already)
    low = first[0].stream_version
    if policy.action == "archive":
        # The last event always stays hot (it carries the stream's version).
        end = min(keep_from, info.version)
        return None if end <= low else Expiry(info.stream_id, "archive", end, end - low)
    if keep_from <= low:
        return None
    if keep_from > info.version:
        return Expiry(info.stream_id, "delete", keep_from, info.version - low + 1)
    return Expiry(info.stream_id, "truncate", keep_from, keep_from - low)


async def _latest(store: EventStore, stream_id: str, count: int) -> list[RecordedEvent]:
    """The stream's last ``count`` readable events, newest first, leaving out the store's
    own (``StreamTruncated`` and the like): a policy counts the application's events, so
    the event its own truncation appends never makes it cut again."""
    found: list[RecordedEvent] = []
    below: int | None = None
    while len(found) < count:
        page = await store.read_stream(
            stream_id, backwards=True, from_version=below, limit=count + 8
        )
        found += [e for e in page if e.event_type not in SYSTEM_EVENT_TYPES]
        if len(page) < count + 8 or page[-1].stream_version == 1:
            break
        below = page[-1].stream_version - 1
    return found[:count]


async def _expire(store: EventStore, expiry: Expiry, version: int) -> Expiry:
    """Carry out ``expiry`` on a stream last seen at ``version`` (ConcurrencyError when it
    moved on since)."""
    if expiry.action == "archive":
        moved = await store.archive_stream(expiry.stream_id, before=expiry.before)
        return Expiry(expiry.stream_id, "archive", expiry.before, moved)
    if expiry.action == "delete":
        await store.delete_stream(expiry.stream_id, expected_version=version)
    else:
        await store.truncate_stream(expiry.stream_id, expiry.before, expected_version=version)
    return expiry


def schedule_retention(
    scheduler: AsyncIOScheduler,
    store: EventStore,
    policies: Sequence[Retention],
    *,
    every_seconds: float = 3600,
) -> Any:
    """Add the retention job to an APScheduler ``AsyncIOScheduler`` (``periodic.every``:
    runs never overlap); each run logs one line with its counts. Returns the job."""

    async def run() -> None:
        report = await apply_retention(store, policies)
        logger.info("%s", report.summary())

    return every(scheduler, every_seconds, run, id="eventfold-retention")
