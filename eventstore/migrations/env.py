"""Alembic environment of eventfold: runs on a connection handed over by
``eventfold.eventstore.migrate``.

There is no alembic.ini: ``eventfold.eventstore.migrate`` builds the configuration, opens the async
engine and passes the (sync-facing) connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from eventfold.eventstore.schema import metadata

VERSION_TABLE = "eventfold_alembic_version"
"""Our own version table, so a user's Alembic history in the same database never collides."""

# Two processes migrating one PostgreSQL database at once (several app instances starting)
# serialize on this advisory lock instead of racing on CREATE TABLE.
MIGRATION_LOCK_KEY = 0x6576_6E74_666F_6C64  # "evntfold"


def run_migrations() -> None:
    """Run the migrations on the connection ``eventfold.eventstore.migrate`` provides."""
    connection: sa.Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "eventfold migrations run through eventfold.eventstore.migrate.migrate(url) "
            "(or `eventfold migrate`), not through the alembic command line"
        )
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds tables for later revisions.
        render_as_batch=sqlite,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
        context.run_migrations()


run_migrations()
