"""The archive table: events that ``archive_stream`` moved out of the hot events table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventfold.eventstore.schema import Xid8

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create eventfold_events_archive, shaped as the events table but with no defaults:
    every value is the one the event had in the hot table.

    A table of its own rather than a partition of the events table (docs/lifecycle.md has the
    measurement): the hot table keeps its keys and statements unchanged, and ordinary reads
    never touch the archive.
    """
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        json_type: sa.types.TypeEngine[object] = postgresql.JSONB()
        transaction_id = sa.Column("transaction_id", Xid8(), nullable=False)
        position = sa.Column("position", sa.BigInteger(), nullable=False)
        # Merged reads of the whole log walk this key beside the events table's.
        keys: list[sa.Constraint] = [
            sa.PrimaryKeyConstraint(
                "transaction_id", "position", name="eventfold_events_archive_log_order"
            )
        ]
        stream_id_type = sa.Text(collation="C")
    else:
        json_type = sa.JSON()
        transaction_id = sa.Column("transaction_id", sa.BigInteger(), nullable=False)
        # On SQLite the log's order is position order (see the events table).
        position = sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False)
        keys = []
        stream_id_type = sa.Text()
    op.create_table(
        "eventfold_events_archive",
        position,
        transaction_id,
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", stream_id_type, nullable=False),
        sa.Column("stream_version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("data", json_type, nullable=False),
        sa.Column("metadata", json_type, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        *keys,
        sa.UniqueConstraint("event_id", name="eventfold_events_archive_event_id_key"),
        sa.UniqueConstraint(
            "stream_id", "stream_version", name="eventfold_events_archive_stream_version"
        ),
    )


def downgrade() -> None:
    """Drop eventfold_events_archive, and every archived event with it."""
    op.drop_table("eventfold_events_archive")
