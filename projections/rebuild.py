"""Rebuilding a projection's read model: blue/green without downtime, or in place; reset.

Blue/green (``rebuild``): the projection's tables are copied empty under shadow names
(``orders__shadow``), a subscription of its own (``<name>#rebuild``, with its own checkpoint
and parked events) replays the log from position zero into them, and when it has caught up
one transaction swaps them in:

- it locks the live checkpoint row, which waits for the live holder's batch in progress and
  keeps its next one out (its compare-and-set then fails, and it reloads the checkpoint);
- it applies the events that arrived since the catch-up to the shadow tables;
- it renames ``orders`` to ``orders__old`` and ``orders__shadow`` to ``orders``, drops the
  old tables, and gives the shadow's indexes the live names back;
- it sets the live checkpoint to the shadow's and moves the shadow's parked events over.

Until that commits, queries keep reading the old tables; after it, the new ones. A replay
that parked events is not swapped in: a read model missing events must not replace one
that has them. The rebuild then raises ``RebuildParked``, the live model stays, and the
shadow tables and their parked events are kept for inspection (``allow_parked=True``
swaps anyway). The next rebuild starts from a fresh shadow. A rebuild
takes the ``<name>#rebuild`` lease, so two rebuilds of one projection cannot overlap; the
live runner goes on serving the old tables all along. Foreign keys between read-model
tables are not supported by the swap (they would keep pointing at the old tables): rebuild
such projections in place.

In place (``rebuild(in_place=True)``): one transaction empties the tables and puts the
checkpoint back to zero (``reset``), then the log is replayed into them - here if no runner
holds the projection, otherwise by its holder while this follows its progress. Queries see
the model empty and growing meanwhile. If the replay parked events it ends with
``RebuildParked`` all the same (unless ``allow_parked=True``): it must not finish silently.

Progress is reported to a callback as plain ``RebuildProgress`` data (the CLI draws a bar).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, GlobalPosition, RecordedEvent
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.errors import (
    ProjectionHalted,
    ProjectionHeld,
    RebuildError,
    RebuildParked,
)
from eventfold.projections.leases import Lease, default_holder, lease_info
from eventfold.projections.partitions import (
    Partition,
    partition_name,
    partitions_of,
    stored_units,
    unit_names,
)
from eventfold.projections.projection import Projection, ReadModel
from eventfold.projections.subscriber import BatchContext, Delivery, FailurePolicy
from eventfold.projections.subscription import Subscription

SHADOW_SUFFIX = "__shadow"
OLD_SUFFIX = "__old"
REBUILD_SUFFIX = "#rebuild"

Phase = Literal["replaying", "swapping", "done"]


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    """How far a rebuild is.

    ``total_estimate`` and ``eta_seconds`` are estimates: the log is not counted up front
    (that would cost as much as reading it); the share of subscribed events seen so far is
    extrapolated over the positions still ahead. Both are None until there is a basis.
    """

    name: str
    phase: Phase
    events_done: int
    total_estimate: int | None
    rate: float
    """Events per second since the rebuild started."""
    eta_seconds: float | None
    position: GlobalPosition
    head: GlobalPosition
    parked: int


ProgressCallback = Callable[[RebuildProgress], None]


def shadow_name(name: str) -> str:
    """The subscriber name a rebuild of ``name`` runs under."""
    return name + REBUILD_SUFFIX


class _Shadow:
    """The projection, writing into shadow tables; a subscriber of its own."""

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.metadata = sa.MetaData(
            naming_convention=projection.metadata.naming_convention
        )
        self.tables: dict[str, sa.Table] = {}
        for table in projection.metadata.sorted_tables:
            if table.foreign_keys:
                raise RebuildError(
                    f"table {table.name!r} of projection {projection.name!r} has foreign "
                    "keys, which a blue/green swap cannot carry over: rebuild it in place"
                )
            shadow = table.to_metadata(self.metadata, name=table.name + SHADOW_SUFFIX)
            # Explicit index and constraint names are schema-wide on PostgreSQL (and index
            # names on SQLite): the shadow's get a suffix, taken off again at the swap.
            items: list[sa.Index | sa.Constraint] = [*shadow.indexes, *shadow.constraints]
            for item in items:
                if isinstance(item.name, str) and item.name:
                    item.name = sa.sql.elements.quoted_name(item.name + SHADOW_SUFFIX, None)
            self.tables[table.name] = shadow

    @property
    def name(self) -> str:
        return shadow_name(self.projection.name)

    @property
    def event_types(self) -> frozenset[str] | None:
        return self.projection.event_types

    @property
    def failure(self) -> FailurePolicy:
        return self.projection.failure

    async def prepare(self, connection: AsyncConnection) -> None:
        await connection.run_sync(self.metadata.create_all)

    def around_batch(
        self, records: Sequence[RecordedEvent], store: EventStore, engine: AsyncEngine
    ) -> AbstractAsyncContextManager[None]:
        return nullcontext()

    async def handle_batch(self, batch: Sequence[Delivery], context: BatchContext) -> None:
        await self.projection.apply_batch(
            batch, ReadModel(context.connection, self.tables, replaying=True)
        )

    async def drop(self, connection: AsyncConnection) -> None:
        await connection.run_sync(self.metadata.drop_all)


class _Meter:
    def __init__(self, name: str, callback: ProgressCallback | None) -> None:
        self.name = name
        self.callback = callback
        self.started = time.monotonic()
        self.done = 0
        self.start_position: GlobalPosition | None = None

    def report(
        self, phase: Phase, position: GlobalPosition, head: GlobalPosition, parked: int
    ) -> RebuildProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        total: int | None = None
        start = self.start_position.position if self.start_position is not None else 0
        covered = position.position - start
        ahead = head.position - position.position
        if phase == "done" or ahead <= 0:
            total = self.done
        elif covered > 0 and self.done > 0:
            total = self.done + round(ahead * self.done / covered)
        eta = None if total is None or rate <= 0 else (total - self.done) / rate
        progress = RebuildProgress(
            self.name, phase, self.done, total, rate, eta, position, head, parked
        )
        if self.callback is not None:
            self.callback(progress)
        return progress


async def rebuild(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    *,
    in_place: bool = False,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 1000,
    holder: str | None = None,
    lease_ttl: float = 5.0,
    allow_parked: bool = False,
) -> RebuildProgress:
    """Rebuild a projection's read model from the whole log; returns the final progress.

    Blue/green by default (no downtime); ``in_place=True`` empties the tables first.
    A partitioned projection's partitions replay side by side (one task each) and are
    swapped in together once all have caught up; this is also how its partition count
    changes (the swap replaces the checkpoints stored with the old count).
    Raises ``ProjectionHeld`` if another rebuild of it runs, ``RebuildError`` if the
    replay halts on a failing event (the live model is then untouched), and
    ``RebuildParked`` if it parked events, unless ``allow_parked`` (blue/green: not
    swapped in, the shadow kept for inspection; in place: the tables hold the new model).
    """
    db = Database(engine)
    if in_place:
        final = await _rebuild_in_place(
            store, db, projection, on_progress, batch_size, holder or default_holder(),
            lease_ttl,
        )
        if final.parked and not allow_parked:
            raise RebuildParked(projection.name, final.parked, in_place=True)
        return final
    shadow = _Shadow(projection)
    lease = Lease(db, shadow.name, holder or default_holder(), lease_ttl)
    if not await lease.acquire():
        info = (await lease_info(db, [shadow.name])).get(shadow.name)
        raise ProjectionHeld(shadow.name, info.holder if info else "another process")
    meter = _Meter(projection.name, on_progress)
    meter.start_position = START
    heartbeat = asyncio.create_task(_keep(lease))
    keep_shadow = False
    parts: list[Partition | None] = [*partitions_of(projection)] or [None]
    subscriptions = [
        Subscription(
            store, db, shadow, replaying=True, batch_size=batch_size, partition=part,
            name=None if part is None else partition_name(shadow.name, part.index),
        )
        for part in parts
    ]
    shadow_names = [subscription.name for subscription in subscriptions]
    try:
        async with db.transaction() as conn:
            await shadow.drop(conn)
            for name in await stored_units(conn, shadow.name):
                await checkpoints.delete(conn, name)
                await parking.clear(conn, name)
        for subscription in subscriptions:
            await subscription.setup()
        await asyncio.gather(*(
            _replay(store, subscription, subscriptions, meter, projection.name)
            for subscription in subscriptions
        ))
        parked = await _parked(db, shadow_names)
        if parked and not allow_parked:
            keep_shadow = True
            raise RebuildParked(projection.name, parked, in_place=False)
        meter.report("swapping", _slowest(subscriptions), await store.head(), parked)
        try:
            await _swap(store, db, projection, shadow, subscriptions, meter, allow_parked)
        except RebuildParked:
            keep_shadow = True
            raise
        keep_shadow = True  # swapped in: the shadow tables are the live ones now
        return meter.report(
            "done", _slowest(subscriptions), await store.head(),
            await _parked(db, unit_names(projection, projection.name)),
        )
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        if not keep_shadow:
            with contextlib.suppress(Exception):
                async with db.transaction() as conn:
                    await shadow.drop(conn)
                    for name in shadow_names:
                        await checkpoints.delete(conn, name)
                        await parking.clear(conn, name)
        with contextlib.suppress(Exception):
            await lease.release()


async def _replay(
    store: EventStore,
    subscription: Subscription,
    everyone: list[Subscription],
    meter: _Meter,
    name: str,
) -> None:
    """Replay one (partition's) subscription until it has caught up with the log."""
    while True:
        try:
            read = await subscription.step()  # awaited first: other partitions add too
        except ProjectionHalted as exc:
            raise RebuildError(
                f"the rebuild of {name!r} halted: {exc.reason}; the live read "
                "model is untouched. Fix the handler (or use the 'park' policy) and rebuild"
            ) from exc
        meter.done += read
        if not subscription.more:
            return
        # The shadow's parked events are all its subscriptions' (cleared before the replay).
        parked = sum(each.parked for each in everyone)
        meter.report("replaying", _slowest(everyone), subscription.head, parked)


def _slowest(subscriptions: list[Subscription]) -> GlobalPosition:
    return min(subscription.checkpoint for subscription in subscriptions)


async def _swap(
    store: EventStore,
    db: Database,
    projection: Projection,
    shadow: _Shadow,
    subscriptions: list[Subscription],
    meter: _Meter,
    allow_parked: bool,
) -> None:
    parts: list[Partition | None] = [*partitions_of(projection)] or [None]
    live = unit_names(projection, projection.name)
    async with db.transaction() as conn:
        for name, part in zip(live, parts, strict=True):
            await checkpoints.ensure(db, conn, name, _row(part))
        stale = sorted(set(await stored_units(conn, projection.name)) - set(live))
        # The live holders' batches lock these rows first: from here on they wait for us.
        for name in sorted([*live, *stale]):
            await checkpoints.read(db, conn, name, lock=True)
        for subscription in subscriptions:
            await _catch_up(store, conn, projection, shadow, subscription, meter)
        shadow_names = [subscription.name for subscription in subscriptions]
        parked = sum((await parking.count(conn, shadow_names)).values())
        if parked and not allow_parked:
            # Raised inside: the transaction rolls back, the shadow stays as it was.
            raise RebuildParked(projection.name, parked, in_place=False)
        await _rename(db, conn, projection, shadow)
        for name in stale:
            # Stored with another partition count: the rebuild replaces them.
            await checkpoints.delete(conn, name)
            await parking.clear(conn, name)
        for name, part, subscription in zip(live, parts, subscriptions, strict=True):
            await checkpoints.put(db, conn, name, subscription.checkpoint, _row(part))
            await parking.move(conn, subscription.name, name)
            await checkpoints.delete(conn, subscription.name)


async def _catch_up(
    store: EventStore,
    conn: AsyncConnection,
    projection: Projection,
    shadow: _Shadow,
    subscription: Subscription,
    meter: _Meter,
) -> None:
    """Apply the events that arrived since the replay caught up, in the swap's transaction."""
    position = subscription.checkpoint
    while True:
        part = subscription.partition
        records = await store.read_all(
            after=position, limit=subscription.batch_size,
            event_types=sorted(shadow.event_types or ()) or None,
            partition=None if part is None else part.in_store,
        )
        if records:
            outcome = await subscription.apply(conn, records)
            if outcome.halted_reason is not None:
                raise RebuildError(
                    f"the rebuild of {projection.name!r} halted while swapping: "
                    f"{outcome.halted_reason}; the live read model is untouched"
                )
            position = subscription.checkpoint = outcome.checkpoint
            meter.done += outcome.events
        if len(records) < subscription.batch_size:
            return


def _row(part: Partition | None) -> tuple[int, int]:
    return (0, 1) if part is None else (part.index, part.count)


async def _rename(
    db: Database, conn: AsyncConnection, projection: Projection, shadow: _Shadow
) -> None:
    q = db.quote
    existing = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    for name in shadow.tables:
        if name in existing:
            await conn.exec_driver_sql(f"ALTER TABLE {q(name)} RENAME TO {q(name + OLD_SUFFIX)}")
        await conn.exec_driver_sql(
            f"ALTER TABLE {q(name + SHADOW_SUFFIX)} RENAME TO {q(name)}"
        )
    for name in shadow.tables:
        if name in existing:
            await conn.exec_driver_sql(f"DROP TABLE {q(name + OLD_SUFFIX)}")
    for name, table in shadow.tables.items():
        if db.sqlite:
            # SQLite cannot rename an index: recreate the live one (the table is in place).
            for index in table.indexes:
                await conn.exec_driver_sql(f"DROP INDEX {q(str(index.name))}")
            for index in projection.metadata.tables[name].indexes:
                await conn.execute(sa.schema.CreateIndex(index))
        else:
            await _restore_postgres_names(db, conn, name)


async def _restore_postgres_names(db: Database, conn: AsyncConnection, table: str) -> None:
    """Give constraints and indexes of the swapped-in table the names the live ones had."""
    q = db.quote

    def live_name(name: str) -> str:
        return name.replace(table + SHADOW_SUFFIX, table).removesuffix(SHADOW_SUFFIX)

    constraints = (await conn.execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass)"
        ),
        {"table": q(table)},
    )).scalars().all()
    for name in constraints:
        if live_name(name) != name:
            await conn.exec_driver_sql(
                f"ALTER TABLE {q(table)} RENAME CONSTRAINT {q(name)} TO {q(live_name(name))}"
            )
    indexes = (await conn.execute(
        sa.text(
            "SELECT indexrelid::regclass::text FROM pg_index "
            "WHERE indrelid = CAST(:table AS regclass)"
        ),
        {"table": q(table)},
    )).scalars().all()
    for name in indexes:
        bare = name.rsplit(".", 1)[-1].strip('"')
        if live_name(bare) != bare:
            await conn.exec_driver_sql(f"ALTER INDEX {q(bare)} RENAME TO {q(live_name(bare))}")


async def reset(engine: AsyncEngine, projection: Projection) -> None:
    """Empty the projection's tables and put its checkpoint back to the start of the log,
    in one transaction; its holder (or the next runner) replays the log into them. Its
    parked events are forgotten: the replay meets those events again."""
    db = Database(engine)
    parts: list[Partition | None] = [*partitions_of(projection)] or [None]
    live = unit_names(projection, projection.name)
    async with db.transaction() as conn:
        for name, part in zip(live, parts, strict=True):
            await checkpoints.ensure(db, conn, name, _row(part))
            await checkpoints.read(db, conn, name, lock=True)
        await projection.prepare(conn)
        for table in reversed(projection.metadata.sorted_tables):
            await conn.execute(table.delete())
        for name, part in zip(live, parts, strict=True):
            await checkpoints.put(db, conn, name, START, _row(part))
            await parking.clear(conn, name)


async def _rebuild_in_place(
    store: EventStore,
    db: Database,
    projection: Projection,
    on_progress: ProgressCallback | None,
    batch_size: int,
    holder: str,
    lease_ttl: float,
) -> RebuildProgress:
    await reset(db.engine, projection)
    meter = _Meter(projection.name, on_progress)
    meter.start_position = START
    parts: list[Partition | None] = [*partitions_of(projection)] or [None]
    names = unit_names(projection, projection.name)
    reached = await asyncio.gather(*(
        _replay_in_place(store, db, projection, name, part, meter, batch_size, holder, lease_ttl)
        for name, part in zip(names, parts, strict=True)
    ))
    return meter.report("done", min(reached), await store.head(), await _parked(db, names))


async def _replay_in_place(
    store: EventStore,
    db: Database,
    projection: Projection,
    name: str,
    part: Partition | None,
    meter: _Meter,
    batch_size: int,
    holder: str,
    lease_ttl: float,
) -> GlobalPosition:
    """Replay one (partition's) subscription into the emptied tables here, or follow the
    runner that holds it; return the position it reached."""
    lease = Lease(db, name, holder, lease_ttl, partition=_row(part))
    if await lease.acquire():
        heartbeat = asyncio.create_task(_keep(lease))
        try:
            subscription = Subscription(
                store, db, projection, name=name, batch_size=batch_size, partition=part
            )
            await subscription.setup()
            while True:
                read = await subscription.step()  # awaited first: other partitions add too
                meter.done += read
                if not subscription.more:
                    return subscription.checkpoint
                # The reset cleared the parked events: those now are the subscription's.
                meter.report(
                    "replaying", subscription.checkpoint, subscription.head, subscription.parked
                )
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception):
                await lease.release()
    # Another runner holds it: it replays; follow its checkpoint.
    types = sorted(projection.event_types or ()) or None
    counted_through = START
    while True:
        async with db.reading() as conn:
            stored = await checkpoints.read(db, conn, name)
        position = START if stored is None else stored.position
        if stored is not None and stored.halted_reason is not None:
            raise ProjectionHalted(name, stored.halted_reason)
        head = await store.head()
        if position > counted_through:
            counted = await _count_between(store, counted_through, position, types, part)
            meter.done += counted
            counted_through = position
        ahead = await store.read_all(after=position, limit=1000, event_types=types)
        if not [r for r in ahead if part is None or part.accepts(r)] and len(ahead) < 1000:
            return position
        meter.report("replaying", position, head, await _parked(db, [name]))
        await asyncio.sleep(0.5)


async def _count_between(
    store: EventStore,
    after: GlobalPosition,
    upto: GlobalPosition,
    types: list[str] | None,
    part: Partition | None,
) -> int:
    """How many subscribed events (of the partition) lie in (after, upto]: what another
    holder did meanwhile."""
    counted = 0
    while True:
        records = await store.read_all(after=after, limit=5000, event_types=types)
        inside = [r for r in records if r.global_position <= upto]
        counted += sum(1 for r in inside if part is None or part.accepts(r))
        if len(inside) < len(records) or len(records) < 5000:
            return counted
        after = records[-1].global_position


async def _parked(db: Database, names: list[str]) -> int:
    async with db.reading() as conn:
        return sum((await parking.count(conn, names)).values())


async def _keep(lease: Lease) -> None:
    while True:
        await asyncio.sleep(lease.ttl / 3)
        with contextlib.suppress(Exception):
            if not await lease.renew():
                return
