"""Where each projection stands: state, holder, checkpoint, lag, rate, parked events.

Read from the database and the store, so it reports on runners in any process: the state
and the last error are what the holder wrote on its lease row (``running``, ``retrying``
after an error such as an outage), the holder is the lease's.

- ``events_behind`` counts the events *of the subscriber's types* after its checkpoint
  (what it still has to process, not the whole log's length), reading the log up to
  ``count_limit`` events; beyond that ``events_behind_exact`` is False and the figure is
  a lower bound.
- ``seconds_behind`` is the age of the oldest unprocessed event of its types (0 when none).
- ``rate`` is the holder's recent events per second (0 when it has not committed for a
  minute).
- A partitioned subscriber's entry is the total of its partitions', which it lists: the
  worst state, summed backlog, rate and parked events, the largest lag, the earliest
  checkpoint, and its holders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, GlobalPosition
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.leases import LeaseInfo, lease_info
from eventfold.projections.partitions import Partition, partition_name, partitions_of
from eventfold.projections.rebuild import shadow_name
from eventfold.projections.subscriber import Subscriber

State = Literal["running", "retrying", "halted", "rebuilding", "stopped"]
"""``halted`` wins over ``rebuilding``, which wins over what the holder reports
(``running``, or ``retrying`` after an error); ``stopped``: no runner holds it."""

_RATE_FRESHNESS = 60.0


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """One projection's (or subscriber's) status."""

    name: str
    state: State
    holder: str | None
    checkpoint: GlobalPosition
    events_behind: int
    events_behind_exact: bool
    seconds_behind: float
    rate: float
    parked: int
    halted_reason: str | None
    rebuild_holder: str | None
    updated_at: datetime | None
    last_error: str | None = None
    """The error the holder is retrying after (an outage), when ``retrying``."""
    state_since: datetime | None = None
    """When the holder's state began, as it reported it."""
    partitions: tuple[ProjectionStatus, ...] = ()
    """A partitioned subscriber's partitions (``name`` "<name>/<i>"); this entry sums them."""


async def status(
    store: EventStore,
    engine: AsyncEngine,
    subscribers: Iterable[Subscriber],
    *,
    count_limit: int = 10_000,
) -> list[ProjectionStatus]:
    """The status of each subscriber, in the order given; a partitioned one's entry sums
    its partitions' (listed in its ``partitions``)."""
    db = Database(engine)
    subs = list(subscribers)
    units: dict[str, list[Partition | None]] = {
        sub.name: [*partitions_of(sub)] or [None] for sub in subs
    }
    names = [
        sub.name if part is None else partition_name(sub.name, part.index)
        for sub in subs for part in units[sub.name]
    ]
    leases = await lease_info(
        db, names + [shadow_name(sub.name) for sub in subs]
    )
    async with db.reading() as conn:
        stored = {name: await checkpoints.read(db, conn, name) for name in names}
        parked = await parking.count(conn, names)
    now = datetime.now(UTC)
    out: list[ProjectionStatus] = []
    for sub in subs:
        rebuild = leases.get(shadow_name(sub.name))
        rebuild_holder = rebuild.holder if rebuild is not None and rebuild.active else None
        types = None if sub.event_types is None else sorted(sub.event_types)
        entries = []
        for part in units[sub.name]:
            name = sub.name if part is None else partition_name(sub.name, part.index)
            behind, exact, oldest = await _behind(
                store, _position(stored[name]), types, count_limit, part
            )
            entries.append(_entry(
                name, stored[name], leases.get(name), rebuild_holder, parked.get(name, 0),
                behind, exact, oldest, now,
            ))
        out.append(entries[0] if units[sub.name] == [None] else _total(sub.name, entries))
    return out


def _position(checkpoint: checkpoints.Checkpoint | None) -> GlobalPosition:
    return START if checkpoint is None else checkpoint.position


def _entry(
    name: str,
    checkpoint: checkpoints.Checkpoint | None,
    lease: LeaseInfo | None,
    rebuild_holder: str | None,
    parked: int,
    behind: int,
    exact: bool,
    oldest: datetime | None,
    now: datetime,
) -> ProjectionStatus:
    holder = lease.holder if lease is not None and lease.active else None
    halted_reason = None if checkpoint is None else checkpoint.halted_reason
    state: State
    if halted_reason is not None:
        state = "halted"
    elif rebuild_holder is not None:
        state = "rebuilding"
    elif holder is not None:
        state = "retrying" if lease is not None and lease.state == "retrying" else "running"
    else:
        state = "stopped"
    active = lease if holder is not None else None
    rate = 0.0
    updated = None if checkpoint is None else checkpoint.updated_at
    if checkpoint is not None and updated is not None and holder is not None:
        age = (now - _aware(updated)).total_seconds()
        rate = checkpoint.rate if age < _RATE_FRESHNESS else 0.0
    return ProjectionStatus(
        name=name,
        state=state,
        holder=holder,
        checkpoint=_position(checkpoint),
        events_behind=behind,
        events_behind_exact=exact,
        seconds_behind=0.0 if oldest is None else max(
            0.0, (now - _aware(oldest)).total_seconds()
        ),
        rate=rate,
        parked=parked,
        halted_reason=halted_reason,
        rebuild_holder=rebuild_holder,
        updated_at=updated,
        last_error=active.last_error if active is not None else None,
        state_since=(
            datetime.fromtimestamp(active.state_since, UTC)
            if active is not None and active.state_since is not None else None
        ),
    )


_STATE_ORDER: tuple[State, ...] = ("halted", "rebuilding", "retrying", "stopped", "running")


def _total(name: str, parts: list[ProjectionStatus]) -> ProjectionStatus:
    """A partitioned subscriber as a whole: the worst partition's state, the sums of their
    backlogs, rates and parked events, the oldest lag and the earliest checkpoint."""
    state = next(s for s in _STATE_ORDER if any(p.state == s for p in parts))
    holders = sorted({p.holder for p in parts if p.holder is not None})
    halted = next((p for p in parts if p.halted_reason is not None), None)
    errors = [p.last_error for p in parts if p.last_error is not None]
    return ProjectionStatus(
        name=name,
        state=state,
        holder=", ".join(holders) or None,
        checkpoint=min(p.checkpoint for p in parts),
        events_behind=sum(p.events_behind for p in parts),
        events_behind_exact=all(p.events_behind_exact for p in parts),
        seconds_behind=max(p.seconds_behind for p in parts),
        rate=sum(p.rate for p in parts),
        parked=sum(p.parked for p in parts),
        halted_reason=None if halted is None else f"{halted.name}: {halted.halted_reason}",
        rebuild_holder=parts[0].rebuild_holder,
        updated_at=max((p.updated_at for p in parts if p.updated_at is not None), default=None),
        last_error=errors[0] if errors else None,
        partitions=tuple(parts),
    )


async def _behind(
    store: EventStore,
    after: GlobalPosition,
    types: list[str] | None,
    limit: int,
    partition: Partition | None,
) -> tuple[int, bool, datetime | None]:
    """Count the subscribed events after ``after`` (of the partition), reading at most
    ``limit`` events of the log."""
    counted = read = 0
    oldest = None
    while read < limit:
        page = min(1000, limit - read)
        records = await store.read_all(
            after=after, limit=page, event_types=types,
            partition=None if partition is None else partition.in_store,
        )
        read += len(records)
        ours = records if partition is None else [r for r in records if partition.accepts(r)]
        if ours and oldest is None:
            oldest = ours[0].recorded_at
        counted += len(ours)
        if len(records) < page:
            return counted, True, oldest
        after = records[-1].global_position
    more = await store.read_all(
        after=after, limit=1, event_types=types,
        partition=None if partition is None else partition.in_store,
    )
    if partition is not None:
        more = [r for r in more if partition.accepts(r)]
    return counted, not more, oldest


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back naive (in UTC, as stored).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
