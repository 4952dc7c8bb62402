"""Subscribers' checkpoints: read, lock, advance by compare-and-set, halt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventfold.eventstore.records import START, GlobalPosition
from eventfold.eventstore.schema import checkpoints
from eventfold.projections.database import Database
from eventfold.projections.errors import CheckpointMoved


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A subscriber's stored checkpoint."""

    name: str
    position: GlobalPosition
    rate: float
    updated_at: datetime | None
    halted_reason: str | None

    @property
    def halted(self) -> bool:
        """Whether the subscriber halted on a failing event."""
        return self.halted_reason is not None


async def ensure(
    db: Database, conn: AsyncConnection, name: str, partition: tuple[int, int] = (0, 1)
) -> None:
    """Create the subscriber's checkpoint at the start of the log if it has none
    (``partition``: which partition of how many it is)."""
    await conn.execute(
        db.insert(checkpoints)
        .values(
            name=name, transaction_id=START.transaction_id, position=START.position,
            partition=partition[0], partitions=partition[1],
        )
        .on_conflict_do_nothing(index_elements=["name"])
    )


async def read(
    db: Database, conn: AsyncConnection, name: str, *, lock: bool = False
) -> Checkpoint | None:
    """The stored checkpoint, or None. ``lock`` takes the row lock (PostgreSQL) until the
    transaction ends: every writer of a checkpoint locks the row first, so batches, swaps
    and resets of one subscriber take turns (SQLite's IMMEDIATE transactions already do)."""
    query = sa.select(
        checkpoints.c.transaction_id, checkpoints.c.position, checkpoints.c.rate,
        checkpoints.c.updated_at, checkpoints.c.halted_reason,
    ).where(checkpoints.c.name == name)
    if lock and not db.sqlite:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return Checkpoint(
        name, GlobalPosition(int(row[0]), int(row[1])), float(row[2]), row[3], row[4]
    )


async def advance(
    conn: AsyncConnection,
    name: str,
    expected: GlobalPosition,
    new: GlobalPosition,
    *,
    rate: float | None = None,
    halted_reason: str | None = None,
) -> None:
    """Move the checkpoint from ``expected`` to ``new`` or raise ``CheckpointMoved``.

    The WHERE on the previous value is the compare-and-set: if another holder committed a
    batch since this one read the checkpoint, no row matches and this batch must roll back.
    """
    values: dict[str, object] = {
        "transaction_id": new.transaction_id,
        "position": new.position,
        "updated_at": sa.func.now(),
    }
    if rate is not None:
        values["rate"] = rate
    if halted_reason is not None:
        values["halted_reason"] = halted_reason
        values["halted_at"] = sa.func.now()
    result = await conn.execute(
        checkpoints.update()
        .where(
            checkpoints.c.name == name,
            checkpoints.c.transaction_id == expected.transaction_id,
            checkpoints.c.position == expected.position,
        )
        .values(**values)
    )
    if result.rowcount != 1:
        row = (await conn.execute(
            sa.select(checkpoints.c.transaction_id, checkpoints.c.position)
            .where(checkpoints.c.name == name)
        )).first()
        actual = None if row is None else GlobalPosition(int(row[0]), int(row[1]))
        raise CheckpointMoved(name, expected, actual)


async def put(
    db: Database,
    conn: AsyncConnection,
    name: str,
    position: GlobalPosition,
    partition: tuple[int, int] = (0, 1),
) -> None:
    """Set the checkpoint unconditionally and clear any halt (rebuild swap, reset); the
    caller holds the row lock, and the holder's next batch sees that it moved."""
    await ensure(db, conn, name, partition)
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == name)
        .values(
            transaction_id=position.transaction_id, position=position.position,
            updated_at=sa.func.now(), halted_at=None, halted_reason=None, rate=0.0,
            partition=partition[0], partitions=partition[1],
        )
    )


async def clear_halt(conn: AsyncConnection, name: str) -> None:
    """Let a halted subscriber go on (its parked events were retried or skipped)."""
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == name)
        .values(halted_at=None, halted_reason=None)
    )


async def delete(conn: AsyncConnection, name: str) -> None:
    """Forget a checkpoint (a finished or abandoned rebuild's shadow)."""
    await conn.execute(checkpoints.delete().where(checkpoints.c.name == name))
