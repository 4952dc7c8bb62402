"""Where the two SQL databases eventfold keeps tables in (PostgreSQL, SQLite) differ, in one
place, so code above the store writes its SQL once and never tests a dialect's name.

It lives beside the store, not in ``projections.database`` (whose ``Database`` builds on it),
because the snapshot store sits below projections and needs it too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Dialect:
    """What differs between PostgreSQL and SQLite for eventfold's own tables."""

    def __init__(self, name: str) -> None:
        if name not in ("postgresql", "sqlite"):
            raise ValueError(f"eventfold keeps its tables in PostgreSQL or SQLite, not {name}")
        self.dialect = name

    @classmethod
    def of(cls, bind: AsyncEngine | AsyncConnection) -> Dialect:
        """The dialect of an engine or a connection."""
        return cls(bind.dialect.name)

    @property
    def sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.dialect == "sqlite"

    @property
    def serial_writes(self) -> bool:
        """Whether a write transaction holds the whole database (SQLite): work that waits
        for another writer, such as appending to a store on the same file, must not run
        inside one, and row locks are moot."""
        return self.sqlite

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_update/nothing``."""
        # Imported here: the PostgreSQL dialect is a tenth of `import eventfold` otherwise.
        from sqlalchemy.dialects import postgresql, sqlite

        if self.sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    def locked(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """``query`` locking the rows it reads until the transaction ends (``FOR UPDATE``);
        as it is where writes are serial anyway."""
        return query if self.serial_writes else query.with_for_update()

    async def claim(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        *where: sa.ColumnElement[bool],
        values: dict[str, Any],
    ) -> bool:
        """Update the one row matching ``where`` with ``values`` in the caller's
        transaction, unless another transaction got to it first; whether this one did.

        PostgreSQL passes over a row another transaction holds (``FOR UPDATE SKIP
        LOCKED``) instead of waiting for it; on SQLite write transactions are serial, so
        the ``where`` guard of the UPDATE decides.
        """
        if not self.serial_writes:
            row = (await conn.execute(
                sa.select(*table.primary_key.columns).where(*where)
                .with_for_update(skip_locked=True)
            )).first()
            if row is None:
                return False
        result = await conn.execute(table.update().where(*where).values(**values))
        return bool(result.rowcount == 1)

    def time(self, moment: datetime) -> datetime:
        """``moment`` as a timestamp column takes it: aware UTC, or naive UTC on SQLite
        (it stores the text of a naive datetime, so every value must be in UTC to compare)."""
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        return moment.replace(tzinfo=None) if self.sqlite else moment

    def current_timestamp(self) -> sa.ColumnElement[Any]:
        """The database's current time for a timestamp column, to the millisecond (SQLite's
        ``CURRENT_TIMESTAMP`` has whole seconds only)."""
        if self.sqlite:
            return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
        return sa.func.now()

    def timestamp_ago(self, seconds: float) -> sa.ColumnElement[Any]:
        """The database's current time minus ``seconds``, to compare with timestamp columns
        written by ``current_timestamp``."""
        if self.sqlite:
            return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now", f"-{seconds:.6f} seconds")
        return sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)

    async def one_statement(self, conn: AsyncConnection) -> AsyncConnection:
        """``conn`` set up for a read of one statement: autocommit on PostgreSQL, which saves
        the BEGIN and ROLLBACK round trips; on SQLite no BEGIN (``eventstore.engine``), which
        saves a trip to the driver's thread."""
        if self.sqlite:
            return await conn.execution_options(sqlite_begin="NONE")
        return await conn.execution_options(isolation_level="AUTOCOMMIT")
