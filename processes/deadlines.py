"""Durable timeouts of process managers: deadline rows and the poller that fires them.

A process manager's ``ctx.schedule(...)`` becomes a row of ``eventfold_deadlines`` written in
the batch's transaction, so a deadline exists exactly when the handling that scheduled it
committed, and survives restarts. The ``DeadlinePoller`` (an APScheduler job, or
``fire_due`` called by hand) fires due deadlines, each in one transaction that locks the
process instance, claims the deadline, runs the manager's timeout handler and marks it
fired, so a deadline fires once in effect even with several runner processes polling:

- lock order is the instance's state row, then its deadline rows - the order batches use
  (they lock the state row when loading the instance and then cancel or schedule
  deadlines), so a poller and a batch never deadlock on the same instance;
- the deadline is claimed with ``Dialect.claim``: PostgreSQL skips a deadline another
  poller holds (``FOR UPDATE SKIP LOCKED``), SQLite's serial writes let the guarded
  ``UPDATE ... WHERE status = 'scheduled'`` decide;
- a handler that fails rolls the firing back; the deadline's ``attempts`` and
  ``last_error`` are recorded and it is tried again after a backoff, up to
  ``max_attempts`` times, then it is marked ``failed`` (listed by ``list_deadlines``).

A partitioned manager (``partitions = N``) has its instances' deadlines fired only by the
runner holding the lease of the partition the instance key hashes to - the runner whose
batches handle that instance's events - so give the poller that runner's ``holder``. Each
round reads which partitions the holder has (from the lease table) and fires only their
deadlines; a partition that moves to another runner takes its deadlines with it, and a
dead runner's are fired by whoever takes its partitions over. The firing itself checks the
lease again in its transaction (on PostgreSQL holding its row, so the lease cannot pass to
another runner before the firing commits): a deadline never fires outside the holder.

Commands the timeout handler sends are de-duplicated like those of event handlers (their
event ids derive from the deadline's id), so firing twice after a crash between the append
and the commit appends nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.backoff import Backoff
from eventfold.eventstore.dialect import Dialect
from eventfold.eventstore.periodic import every
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import partition_of
from eventfold.eventstore.schema import deadlines, leases, process_states
from eventfold.projections.database import Database
from eventfold.projections.partitions import partition_name

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger("eventfold.process")

DeadlineStatus = Literal["scheduled", "fired", "cancelled", "failed"]
"""``scheduled`` until it fires (``fired``), is cancelled (``cancelled``: it never fires)
or its handler failed ``max_attempts`` times (``failed``)."""

_IDS = uuid.UUID("0b6f3c2e-5a37-4f4e-9a55-2f1f4d0c9e61")
"""Namespace of the deadline ids (uuid5), so a re-run scheduling makes the same id."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """A scheduled timeout of one process instance."""

    id: uuid.UUID
    manager: str
    key: str
    name: str
    due_at: datetime
    message_type: str
    message: dict[str, Any]
    cause: dict[str, str]
    """The scheduling event's ``event_id``, ``correlation_id`` and ``traceparent``: events
    appended by the timeout handler are caused by that event and share its correlation."""
    status: DeadlineStatus
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A deadline to write when the instance is saved (what ``ctx.schedule`` buffers)."""

    id: uuid.UUID
    name: str
    due_at: datetime
    message_type: str
    message: dict[str, Any]
    cause: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Deadlines of one name to cancel when the instance is saved."""

    name: str


class DeadlineHandler(Protocol):
    """What the poller fires deadlines into: a process manager."""

    @property
    def name(self) -> str:
        """The process manager's name (deadlines are stored under it)."""
        ...

    @property
    def partitions(self) -> int:
        """How many partitions it is served as (1: unpartitioned)."""
        ...

    async def fire_deadline(
        self, db: Database, store: EventStore, id: uuid.UUID, key: str,
        *, holder: str | None = None,
    ) -> bool:
        """Claim and fire one deadline; False when it was no longer scheduled (or, given
        ``holder``, that runner does not hold the instance's partition)."""
        ...


def deadline_id(manager: str, key: str, name: str, cause: uuid.UUID, index: int) -> uuid.UUID:
    """The id of the ``index``-th deadline scheduled while handling ``cause``."""
    return uuid.uuid5(_IDS, f"{manager}\x1f{key}\x1f{name}\x1f{cause}\x1f{index}")


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (SQLite hands timestamps back naive, in UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


async def apply_changes(
    conn: AsyncConnection,
    manager: str,
    key: str,
    changes: Iterable[Scheduled | Cancelled],
    *,
    cancel_all: bool,
) -> None:
    """Write buffered schedules and cancellations in order; ``cancel_all`` (the instance
    finished) then cancels every deadline of the instance still scheduled."""
    dialect = Dialect.of(conn)
    for change in changes:
        # Scheduling a name replaces the deadline of that name still scheduled.
        name = change.name
        await conn.execute(
            deadlines.update()
            .where(deadlines.c.manager == manager, deadlines.c.key == key,
                   deadlines.c.name == name, deadlines.c.status == "scheduled")
            .values(status="cancelled")
        )
        if isinstance(change, Scheduled):
            message = {"type": change.message_type, "data": change.message,
                       "cause": dict(change.cause)}
            await conn.execute(
                deadlines.insert().values(
                    id=change.id, manager=manager, key=key, name=name,
                    due_at=dialect.time(change.due_at), message=message,
                    status="scheduled", attempts=0,
                )
            )
    if cancel_all:
        await conn.execute(
            deadlines.update()
            .where(deadlines.c.manager == manager, deadlines.c.key == key,
                   deadlines.c.status == "scheduled")
            .values(status="cancelled")
        )


def _deadline(row: Any) -> Deadline:
    message = row.message
    return Deadline(
        id=row.id, manager=row.manager, key=row.key, name=row.name, due_at=utc(row.due_at),
        message_type=message["type"], message=message["data"], cause=message.get("cause", {}),
        status=row.status, attempts=row.attempts, last_error=row.last_error,
    )


_COLUMNS = (
    deadlines.c.id, deadlines.c.manager, deadlines.c.key, deadlines.c.name,
    deadlines.c.due_at, deadlines.c.message, deadlines.c.status, deadlines.c.attempts,
    deadlines.c.last_error,
)


async def list_deadlines(
    engine: AsyncEngine,
    manager: str,
    *,
    key: str | None = None,
    status: DeadlineStatus | None = None,
) -> list[Deadline]:
    """A process manager's deadlines (of one instance, of one status), by due time."""
    query = sa.select(*_COLUMNS).where(deadlines.c.manager == manager)
    if key is not None:
        query = query.where(deadlines.c.key == key)
    if status is not None:
        query = query.where(deadlines.c.status == status)
    async with Database(engine).reading() as conn:
        rows = (await conn.execute(query.order_by(deadlines.c.due_at, deadlines.c.id))).all()
    return [_deadline(row) for row in rows]


async def read_deadline(conn: AsyncConnection, id: uuid.UUID) -> Deadline | None:
    """The deadline with this id, or None."""
    row = (await conn.execute(sa.select(*_COLUMNS).where(deadlines.c.id == id))).first()
    return None if row is None else _deadline(row)


async def lease_held(conn: AsyncConnection, unit: str, holder: str) -> bool:
    """Whether ``holder`` holds the lease ``unit`` now. On PostgreSQL the lease row stays
    share-locked until the caller's transaction ends: it cannot pass to another runner
    (nor be renewed) meanwhile."""
    db = Database(conn.engine)
    query = sa.select(leases.c.name).where(
        leases.c.name == unit, leases.c.holder == holder, leases.c.expires_at > db.now()
    )
    if not db.sqlite:
        query = query.with_for_update(read=True)
    return (await conn.execute(query)).first() is not None


async def claim(
    conn: AsyncConnection,
    manager: str,
    id: uuid.UUID,
    key: str,
    *,
    lease: tuple[str, str] | None = None,
) -> Deadline | None:
    """Mark a scheduled deadline fired in the caller's transaction, exclusively; None when
    it is no longer scheduled (fired by another poller, cancelled) or, given ``lease``
    (unit, holder), when that holder does not hold that lease."""
    if lease is not None and not await lease_held(conn, *lease):
        return None
    fired = {"status": "fired", "fired_at": sa.func.now(),
             "attempts": deadlines.c.attempts + 1}
    dialect = Dialect.of(conn)
    # The instance first, as batches lock it, then the deadline: a deadline another
    # poller is firing is its business.
    await conn.execute(dialect.locked(
        sa.select(process_states.c.version)
        .where(process_states.c.manager == manager, process_states.c.key == key)
    ))
    if not await dialect.claim(
        conn, deadlines, deadlines.c.id == id, deadlines.c.status == "scheduled", values=fired
    ):
        return None
    return await read_deadline(conn, id)


Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class DeadlinePoller:
    """Fires the due deadlines of some process managers, at least once, exclusively.

    ``async with DeadlinePoller(store, engine, [manager]) as poller`` polls every
    ``interval`` seconds on an APScheduler ``AsyncIOScheduler`` (pass ``scheduler`` to add
    the job to yours); ``await poller.fire_due(now=...)`` fires what is due at ``now``
    right away (tests use it instead of waiting). Run one poller per runner process; they
    share the work safely. ``holder`` is that runner's holder (``runner.holder``): the
    deadlines of a partitioned manager fire only where their partition's lease is held,
    so a poller of one needs it.
    """

    def __init__(
        self,
        store: EventStore,
        engine: AsyncEngine,
        managers: Iterable[DeadlineHandler],
        *,
        interval: float = 1.0,
        batch_size: int = 100,
        max_attempts: int = 5,
        retry_backoff: float = 1.0,
        clock: Clock = _now,
        scheduler: AsyncIOScheduler | None = None,
        holder: str | None = None,
    ) -> None:
        if interval <= 0 or batch_size < 1 or max_attempts < 1 or retry_backoff < 0:
            raise ValueError(
                "interval must be positive, batch_size and max_attempts at least 1, "
                "retry_backoff not negative"
            )
        self.store = store
        self.db = Database(engine)
        self.managers = {manager.name: manager for manager in managers}
        partitioned = sorted(name for name, m in self.managers.items() if m.partitions > 1)
        if partitioned and holder is None:
            raise ValueError(
                f"{', '.join(partitioned)} is partitioned: its deadlines fire only in the "
                "runner holding the instance's partition; pass holder=runner.holder"
            )
        self.holder = holder
        self.interval = interval
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        # Uncapped: ``max_attempts`` bounds the waits.
        self._retry_delays = Backoff(initial=retry_backoff, cap=math.inf)
        self.clock = clock
        self._scheduler = scheduler
        self._own_scheduler = scheduler is None
        self._job: Any = None
        # One firing round at a time in this process; ``stop`` waits for the one running.
        self._round = asyncio.Lock()
        self._ticks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Add the polling job (and start the scheduler this poller owns)."""
        if self._job is not None:
            return
        if self._scheduler is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._job = every(
            self._scheduler, self.interval, self._tick,
            id=f"eventfold-deadline-poller:{id(self):x}", first_run_now=True,
        )
        if self._own_scheduler and not self._scheduler.running:
            self._scheduler.start()

    async def stop(self) -> None:
        """Remove the job; a firing round in progress finishes first."""
        if self._job is not None:
            self._job.remove()
            self._job = None
        # A round the scheduler started before the job was removed runs to its end first:
        # shutting the scheduler down would cancel it mid-query, and APScheduler logs that
        # cancellation with a traceback.
        await asyncio.gather(*self._ticks, return_exceptions=True)
        if self._own_scheduler and self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        async with self._round:
            pass

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _tick(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._ticks.add(task)
        try:
            await self.fire_due()
        except Exception:
            # The job runs again at the next interval; the rows are durable.
            logger.exception("firing due deadlines failed; retrying at the next poll")
        finally:
            self._ticks.discard(task)

    async def fire_due(self, now: datetime | None = None) -> int:
        """Fire every deadline due at ``now`` (default: the clock); the number fired."""
        moment = utc(now if now is not None else self.clock())
        fired = 0
        async with self._round:
            after: tuple[Any, uuid.UUID] | None = None
            while True:
                # Read again for each page: a partition may have moved meanwhile.
                held = await self._held()
                due = await self._due(moment, held, after)
                for deadline_id_, manager, key, _ in due:
                    parts = held.get(manager)
                    if parts is not None and (
                        partition_of(key, self.managers[manager].partitions) not in parts
                    ):
                        continue  # another runner's partition: fired there
                    if await self._fire(deadline_id_, manager, key, moment):
                        fired += 1
                if len(due) < self.batch_size:
                    return fired
                after = (due[-1][3], due[-1][0])

    async def _held(self) -> dict[str, set[int]]:
        """The partitions the holder has of each partitioned manager (by its leases)."""
        counts = {name: m.partitions for name, m in self.managers.items() if m.partitions > 1}
        if not counts:
            return {}
        units = {
            partition_name(name, index): (name, index)
            for name, count in counts.items()
            for index in range(count)
        }
        async with self.db.reading() as conn:
            rows = (await conn.execute(
                sa.select(leases.c.name).where(
                    leases.c.name.in_(sorted(units)),
                    leases.c.holder == self.holder,
                    leases.c.expires_at > self.db.now(),
                )
            )).scalars().all()
        held: dict[str, set[int]] = {name: set() for name in counts}
        for unit in rows:
            name, index = units[unit]
            held[name].add(index)
        return held

    async def _due(
        self,
        moment: datetime,
        held: Mapping[str, set[int]],
        after: tuple[Any, uuid.UUID] | None,
    ) -> list[tuple[uuid.UUID, str, str, Any]]:
        """A page of due deadlines (after ``after``, by due time and id) of the managers
        with something to fire here (unpartitioned, or with partitions held)."""
        managers = sorted(name for name in self.managers if held.get(name, True))
        if not managers:
            return []
        query = (
            sa.select(deadlines.c.id, deadlines.c.manager, deadlines.c.key, deadlines.c.due_at)
            .where(
                deadlines.c.manager.in_(managers),
                deadlines.c.status == "scheduled",
                deadlines.c.due_at <= self.db.time(moment),
            )
        )
        if after is not None:
            due_at, id = after
            query = query.where(sa.or_(
                deadlines.c.due_at > due_at,
                sa.and_(deadlines.c.due_at == due_at, deadlines.c.id > id),
            ))
        async with self.db.reading() as conn:
            rows = (await conn.execute(
                query.order_by(deadlines.c.due_at, deadlines.c.id).limit(self.batch_size)
            )).all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def _fire(self, id: uuid.UUID, manager: str, key: str, moment: datetime) -> bool:
        try:
            return await self.managers[manager].fire_deadline(
                self.db, self.store, id, key, holder=self.holder
            )
        except Exception as exc:
            await self._failed(id, moment, exc)
            return False

    async def _failed(self, id: uuid.UUID, moment: datetime, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}".strip()
        async with self.db.transaction() as conn:
            row = (await conn.execute(
                sa.select(deadlines.c.attempts, deadlines.c.name, deadlines.c.key)
                .where(deadlines.c.id == id, deadlines.c.status == "scheduled")
            )).first()
            if row is None:
                return
            attempts = int(row[0]) + 1
            give_up = attempts >= self.max_attempts
            retry_at = moment + timedelta(seconds=self._retry_delays.delay(attempts))
            await conn.execute(
                deadlines.update()
                .where(deadlines.c.id == id, deadlines.c.status == "scheduled")
                .values(
                    attempts=attempts, last_error=error[:2000],
                    status="failed" if give_up else "scheduled",
                    due_at=self.db.time(retry_at),
                )
            )
        if give_up:
            logger.error(
                "deadline %r of %s failed %d times and is given up: %s",
                row[1], row[2], attempts, error,
            )
        else:
            logger.warning(
                "deadline %r of %s failed (attempt %d of %d), retrying at %s: %s",
                row[1], row[2], attempts, self.max_attempts, retry_at.isoformat(), error,
            )
