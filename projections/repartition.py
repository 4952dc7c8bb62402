"""Changing a subscriber's partition count without replaying: what process managers and
relays do (a projection may also be rebuilt instead).

A rebuild replays history without effects, which is right for a read model but would
skip, for a process manager or a relay, the events between where the old partitions
stopped and the head. Their state does not depend on the count - a process manager's
instances and deadlines are stored by instance key, a relay keeps only checkpoints - so
the count may change at a point of the log where the old partitions agree:

- no runner serves the subscriber (no live lease of it or of its partitions);
- nothing is parked or halted (parked events are stored under the old partitions' names);
- every old partition has dealt with all its events up to the furthest checkpoint ``M``
  of them all: none of its events lies between its own checkpoint and ``M``.

Then every event up to ``M`` was handled exactly once and none after it, and one
transaction replaces the old checkpoints with the new partitions', all at ``M``. Stopping
the runners once they have caught up gives exactly that; a runner still serving, or a
partition behind, makes ``repartition`` refuse and say what to do. Runners that still
declare the old count then refuse to start (``PartitionsChanged``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import GlobalPosition
from eventfold.eventstore.schema import checkpoints as checkpoint_rows
from eventfold.eventstore.schema import leases
from eventfold.projections import checkpoints, parking
from eventfold.projections.database import Database
from eventfold.projections.errors import ProjectionHeld, RepartitionRefused
from eventfold.projections.partitions import (
    Partition,
    Partitioned,
    partition_name,
    partitions_of,
    stream_key,
)
from eventfold.projections.subscriber import Subscriber

_PAGE = 1000


async def repartition(
    store: EventStore, engine: AsyncEngine, subscriber: Subscriber
) -> GlobalPosition | None:
    """Store ``subscriber``'s checkpoints for the partition count it declares now; return
    the position its new partitions go on after (None: nothing stored, or already so).

    Raises ``ProjectionHeld`` while a runner serves it and ``RepartitionRefused`` when a
    partition is behind, halted or has parked events.
    """
    name = subscriber.name
    db = Database(engine)
    new = [*partitions_of(subscriber)]
    async with db.reading() as conn:
        stored = await _stored(conn, name)
        if not stored or {count for _, count in stored.values()} == {len(new) or 1}:
            return None
        await _refuse_if_served(db, conn, name, list(stored))
    positions = {unit: position for unit, (position, _) in stored.items()}
    furthest = max(positions.values())
    for unit, (position, count) in stored.items():
        behind = await _behind(
            store, subscriber, _old_partition(subscriber, unit, count), position, furthest
        )
        if behind:
            raise RepartitionRefused(
                name,
                f"{unit} has not dealt with its events up to {tuple(furthest)} (the furthest "
                "partition's checkpoint): let its runners catch up, stop them, and try again",
            )
    async with db.transaction() as conn:
        for unit, position in positions.items():
            now = await checkpoints.read(db, conn, unit, lock=True)
            if now is None or now.position != position:
                raise RepartitionRefused(name, f"{unit} moved meanwhile: a runner serves it")
        await _refuse_if_served(db, conn, name, list(stored))
        for unit in stored:
            await checkpoints.delete(conn, unit)
        units = [(partition_name(name, p.index), (p.index, p.count)) for p in new] or [
            (name, (0, 1))
        ]
        for unit, row in units:
            await checkpoints.put(db, conn, unit, furthest, row)
        gone = sorted(set(stored) - {unit for unit, _ in units})
        if gone:
            await conn.execute(leases.delete().where(leases.c.name.in_(gone)))
    return furthest


async def _stored(conn: AsyncConnection, name: str) -> dict[str, tuple[GlobalPosition, int]]:
    """The subscriber's stored checkpoints (its own, its partitions') and their counts."""
    rows = (
        await conn.execute(
            sa.select(
                checkpoint_rows.c.name,
                checkpoint_rows.c.transaction_id,
                checkpoint_rows.c.position,
                checkpoint_rows.c.partitions,
            ).where(
                sa.or_(
                    checkpoint_rows.c.name == name,
                    sa.and_(
                        checkpoint_rows.c.name.startswith(name + "/", autoescape=True),
                        checkpoint_rows.c.partitions > 1,
                    ),
                )
            )
        )
    ).all()
    return {str(row[0]): (GlobalPosition(int(row[1]), int(row[2])), int(row[3])) for row in rows}


async def _refuse_if_served(
    db: Database, conn: AsyncConnection, name: str, units: list[str]
) -> None:
    """Raise while a runner holds the subscriber, or anything is parked or halted."""
    holder = (
        await conn.execute(
            sa.select(leases.c.holder)
            .where(
                sa.or_(
                    leases.c.name.in_(units),
                    leases.c.name.startswith(name + "@", autoescape=True),
                ),
                leases.c.expires_at > db.now(),
            )
            .limit(1)
        )
    ).scalar()
    if holder is not None:
        raise ProjectionHeld(name, str(holder))
    parked = sum((await parking.count(conn, units)).values())
    if parked:
        raise RepartitionRefused(
            name,
            f"{parked} event(s) are parked: retry or skip them first "
            f"(`eventfold projections parked {name}`)",
        )
    for unit in units:
        checkpoint = await checkpoints.read(db, conn, unit)
        if checkpoint is not None and checkpoint.halted:
            raise RepartitionRefused(
                name, f"{unit} is halted: retry or skip its parked events first"
            )


def _old_partition(subscriber: Subscriber, unit: str, count: int) -> Partition | None:
    """The partition a stored checkpoint was kept for (None: the whole subscriber)."""
    if count == 1:
        return None
    index = int(unit.rsplit("/", 1)[1])
    by_stream = getattr(type(subscriber), "partition_key", None) is stream_key
    key = (
        None if by_stream or not isinstance(subscriber, Partitioned) else (subscriber.partition_key)
    )
    return Partition(index, count, key)


async def _behind(
    store: EventStore,
    subscriber: Subscriber,
    partition: Partition | None,
    after: GlobalPosition,
    upto: GlobalPosition,
) -> bool:
    """Whether an event of the partition lies in (after, upto]."""
    types = None if subscriber.event_types is None else sorted(subscriber.event_types)
    position = after
    while position < upto:
        records = await store.read_all(
            after=position,
            limit=_PAGE,
            event_types=types,
            partition=None if partition is None else partition.in_store,
        )
        for record in records:
            if record.global_position > upto:
                return False
            if partition is None or partition.accepts(record):
                return True
        if len(records) < _PAGE:
            return False
        position = records[-1].global_position
    return False


__all__ = ["repartition"]
