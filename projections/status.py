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
from eventfold.projections.leases import lease_info
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


async def status(
    store: EventStore,
    engine: AsyncEngine,
    subscribers: Iterable[Subscriber],
    *,
    count_limit: int = 10_000,
) -> list[ProjectionStatus]:
    """The status of each subscriber, in the order given."""
    db = Database(engine)
    subs = list(subscribers)
    names = [sub.name for sub in subs]
    leases = await lease_info(db, names + [shadow_name(name) for name in names])
    async with db.reading() as conn:
        stored = {name: await checkpoints.read(db, conn, name) for name in names}
        parked = await parking.count(conn, names)
    now = datetime.now(UTC)
    out: list[ProjectionStatus] = []
    for sub in subs:
        checkpoint = stored[sub.name]
        position = START if checkpoint is None else checkpoint.position
        lease = leases.get(sub.name)
        holder = lease.holder if lease is not None and lease.active else None
        rebuild = leases.get(shadow_name(sub.name))
        rebuild_holder = rebuild.holder if rebuild is not None and rebuild.active else None
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
        types = None if sub.event_types is None else sorted(sub.event_types)
        behind, exact, oldest = await _behind(store, position, types, count_limit)
        rate = 0.0
        updated = None if checkpoint is None else checkpoint.updated_at
        if checkpoint is not None and updated is not None and holder is not None:
            age = (now - _aware(updated)).total_seconds()
            rate = checkpoint.rate if age < _RATE_FRESHNESS else 0.0
        out.append(ProjectionStatus(
            name=sub.name,
            state=state,
            holder=holder,
            checkpoint=position,
            events_behind=behind,
            events_behind_exact=exact,
            seconds_behind=0.0 if oldest is None else max(
                0.0, (now - _aware(oldest)).total_seconds()
            ),
            rate=rate,
            parked=parked.get(sub.name, 0),
            halted_reason=halted_reason,
            rebuild_holder=rebuild_holder,
            updated_at=updated,
            last_error=active.last_error if active is not None else None,
            state_since=(
                datetime.fromtimestamp(active.state_since, UTC)
                if active is not None and active.state_since is not None else None
            ),
        ))
    return out


async def _behind(
    store: EventStore, after: GlobalPosition, types: list[str] | None, limit: int
) -> tuple[int, bool, datetime | None]:
    counted, oldest = 0, None
    while counted < limit:
        page = min(1000, limit - counted)
        records = await store.read_all(after=after, limit=page, event_types=types)
        if records and oldest is None:
            oldest = records[0].recorded_at
        counted += len(records)
        if len(records) < page:
            return counted, True, oldest
        after = records[-1].global_position
    more = await store.read_all(after=after, limit=1, event_types=types)
    return counted, not more, oldest


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back naive (in UTC, as stored).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
