"""Copying the snapshots of one store's database into another's (``eventfold copy
--snapshots``)."""

from __future__ import annotations

import sqlalchemy as sa

from eventfold.eventstore.dialect import Dialect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.schema import snapshots as table

PAGE_SIZE = 1000
"""Snapshots per read of the source and per transaction of the target."""


async def copy_snapshots(source_url: str, target_url: str, *, page_size: int = PAGE_SIZE) -> int:
    """Copy every snapshot row (stream, version, state version, state, time taken) from
    the database at ``source_url`` to the one at ``target_url``; returns how many were
    new there. A snapshot the target has already (same stream and version) is kept, so
    running it again after an interruption copies only the rest."""
    source, target = create_engine(source_url), create_engine(target_url)
    dialect = Dialect.of(target)
    columns = (
        table.c.stream_id, table.c.version, table.c.state_version, table.c.state,
        table.c.taken_at,
    )
    copied = 0
    after: tuple[str, int] | None = None
    try:
        while True:
            query = sa.select(*columns).order_by(table.c.stream_id, table.c.version)
            if after is not None:
                query = query.where(sa.tuple_(table.c.stream_id, table.c.version) > after)
            async with source.connect() as conn:
                rows = (await conn.execute(query.limit(page_size))).all()
            if not rows:
                return copied
            statement = dialect.insert(table).on_conflict_do_nothing(
                index_elements=[table.c.stream_id, table.c.version]
            )
            async with target.begin() as conn:
                result = await conn.execute(
                    statement, [row._asdict() for row in rows]
                )
            copied += max(result.rowcount, 0)
            after = (rows[-1].stream_id, rows[-1].version)
    finally:
        await source.dispose()
        await target.dispose()
