"""Snapshot stores: in the event store's database (SQL) or in process memory (tests).

Several snapshots may be kept per stream (``prune`` trims them): a temporal load as of an
old version can still start from an older snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventfold.eventstore import category_of
from eventfold.eventstore.dialect import Dialect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.schema import snapshots as table
from eventfold.snapshots.protocol import Snapshot, SnapshotStore

logger = logging.getLogger("eventfold.snapshots")


@runtime_checkable
class SnapshotStorage(SnapshotStore, Protocol):
    """A snapshot store that can also be written, listed and pruned directly."""

    async def save(self, snapshot: Snapshot) -> None:
        """Store a snapshot (replacing one of the same stream and version)."""
        ...

    async def latest_versions(self, stream_ids: Collection[str]) -> dict[str, int]:
        """The newest snapshot version of each stream that has one."""
        ...

    async def prune(
        self, *, keep: int = 1, state_versions: Mapping[str, int] | None = None
    ) -> int:
        """Delete all but the newest ``keep`` snapshots of each stream, and every snapshot
        whose state version differs from ``state_versions[category]``; return how many."""
        ...

    async def delete(self, stream_ids: Collection[str]) -> int:
        """Delete every snapshot of those streams (they may hold personal data of a
        forgotten subject); return how many."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def due(previous_version: int, version: int, every: int | None) -> bool:
    """Whether a save from ``previous_version`` to ``version`` crossed a multiple of ``every``."""
    return bool(every) and version // every > previous_version // every  # type: ignore[operator]


def open_snapshots(url: str) -> SnapshotStorage:
    """The snapshot store of the event store at ``url`` (memory:// keeps them in memory)."""
    if url.split(":", 1)[0].lower() == "memory":
        return MemorySnapshotStore()
    return SqlSnapshotStore(create_engine(url))


_NO_MAX = 2**31 - 1
"""The largest stream version (the column is a 32-bit integer): no upper bound."""

# Built once: building the statement and its cache key cost more than running it on
# SQLite and about a quarter of it on PostgreSQL, once per load from a snapshot.
_LATEST = (
    sa.select(table.c.version, table.c.state)
    .where(
        table.c.stream_id == sa.bindparam("stream_id"),
        table.c.state_version == sa.bindparam("state_version"),
        table.c.version <= sa.bindparam("max_version"),
    )
    .order_by(table.c.version.desc())
    .limit(1)
)


class SqlSnapshotStore:
    """Snapshots in the ``eventfold_snapshots`` table of the event store's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = Dialect.of(engine)

    async def latest(
        self, stream_id: str, *, state_version: int, max_version: int | None = None
    ) -> Snapshot | None:
        arguments = {
            "stream_id": stream_id, "state_version": state_version,
            "max_version": _NO_MAX if max_version is None else max_version,
        }
        try:
            async with self.engine.connect() as conn:
                # One statement needs no transaction: on PostgreSQL that halves the time of
                # a load from a snapshot.
                conn = await self._dialect.one_statement(conn)
                row = (await conn.execute(_LATEST, arguments)).first()
        except (ValueError, TypeError) as exc:  # the driver could not decode the JSON
            logger.warning("ignoring unreadable snapshot of %s: %s", stream_id, exc)
            return None
        if row is None:
            return None
        if not isinstance(row.state, dict):
            logger.warning(
                "ignoring snapshot of %s at version %s: its state is not a JSON object",
                stream_id, row.version,
            )
            return None
        return Snapshot(stream_id, row.version, state_version, row.state)

    async def after_save(
        self,
        stream_id: str,
        *,
        previous_version: int,
        version: int,
        every: int | None,
        capture: Callable[[], Snapshot],
    ) -> None:
        if due(previous_version, version, every):
            await self.save(capture())

    async def save(self, snapshot: Snapshot) -> None:
        statement = self._dialect.insert(table).values(
            stream_id=snapshot.stream_id, version=snapshot.version,
            state_version=snapshot.state_version, state=snapshot.state,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.stream_id, table.c.version],
            set_={"state_version": statement.excluded.state_version,
                  "state": statement.excluded.state, "taken_at": sa.func.now()},
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)

    async def latest_versions(self, stream_ids: Collection[str]) -> dict[str, int]:
        if not stream_ids:
            return {}
        query = (
            sa.select(table.c.stream_id, sa.func.max(table.c.version))
            .where(table.c.stream_id.in_(list(stream_ids)))
            .group_by(table.c.stream_id)
        )
        async with self.engine.connect() as conn:
            return {stream_id: version for stream_id, version in await conn.execute(query)}

    async def prune(
        self, *, keep: int = 1, state_versions: Mapping[str, int] | None = None
    ) -> int:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        deleted = 0
        async with self.engine.begin() as conn:
            if state_versions:
                rows = await conn.execute(
                    sa.select(table.c.stream_id, table.c.version, table.c.state_version)
                )
                stale = [
                    (stream_id, version) for stream_id, version, state_version in rows
                    if state_versions.get(category_of(stream_id), state_version) != state_version
                ]
                for stream_id, version in stale:
                    await conn.execute(table.delete().where(
                        table.c.stream_id == stream_id, table.c.version == version
                    ))
                deleted += len(stale)
            rank = sa.func.row_number().over(
                partition_by=table.c.stream_id, order_by=table.c.version.desc()
            ).label("rank")
            ranked = sa.select(table.c.stream_id, table.c.version, rank).subquery()
            old = sa.select(ranked.c.stream_id, ranked.c.version).where(ranked.c.rank > keep)
            result = await conn.execute(
                table.delete().where(sa.tuple_(table.c.stream_id, table.c.version).in_(old))
            )
            deleted += result.rowcount
        return deleted

    async def delete(self, stream_ids: Collection[str]) -> int:
        if not stream_ids:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                table.delete().where(table.c.stream_id.in_(list(stream_ids)))
            )
        return int(result.rowcount)

    async def close(self) -> None:
        await self.engine.dispose()


class MemorySnapshotStore:
    """Snapshots in process memory, for unit tests and the memory event store."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[int, Snapshot]] = {}

    async def latest(
        self, stream_id: str, *, state_version: int, max_version: int | None = None
    ) -> Snapshot | None:
        fitting = [
            snapshot for version, snapshot in self._snapshots.get(stream_id, {}).items()
            if snapshot.state_version == state_version
            and (max_version is None or version <= max_version)
        ]
        return max(fitting, key=lambda s: s.version, default=None)

    async def after_save(
        self,
        stream_id: str,
        *,
        previous_version: int,
        version: int,
        every: int | None,
        capture: Callable[[], Snapshot],
    ) -> None:
        if due(previous_version, version, every):
            await self.save(capture())

    async def save(self, snapshot: Snapshot) -> None:
        self._snapshots.setdefault(snapshot.stream_id, {})[snapshot.version] = snapshot

    async def latest_versions(self, stream_ids: Collection[str]) -> dict[str, int]:
        return {
            stream_id: max(self._snapshots[stream_id])
            for stream_id in stream_ids if self._snapshots.get(stream_id)
        }

    async def prune(
        self, *, keep: int = 1, state_versions: Mapping[str, int] | None = None
    ) -> int:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        deleted = 0
        for stream_id, by_version in self._snapshots.items():
            current = (state_versions or {}).get(category_of(stream_id))
            for version in sorted(by_version, reverse=True):
                if current is not None and by_version[version].state_version != current:
                    del by_version[version]
                    deleted += 1
            for version in sorted(by_version, reverse=True)[keep:]:
                del by_version[version]
                deleted += 1
        return deleted

    async def delete(self, stream_ids: Collection[str]) -> int:
        return sum(len(self._snapshots.pop(stream_id, {})) for stream_id in stream_ids)

    async def close(self) -> None:
        """Nothing to release."""
