"""The events table (and, on SQLite, the streams table).

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out explicitly (not imported from eventfold.eventstore.schema) because a revision is
history:
it must create the same tables forever, whatever the schema module says later. A test checks
that the migrated database and eventfold.eventstore.schema agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventfold.eventstore.schema import Xid8

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create eventfold_events, and eventfold_streams on SQLite.

    PostgreSQL has no streams table: an append checks the expected version with the unique
    (stream_id, stream_version) constraint of the events table alone (one row written per
    event, nothing else), and a stream's version is the last version of its events
    (eventstore/backends/postgres.py). SQLite serializes writers and keeps its streams table.
    """
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        json_type: sa.types.TypeEngine[object] = postgresql.JSONB()
        transaction_id = sa.Column(
            "transaction_id", Xid8(), nullable=False,
            server_default=sa.text("pg_current_xact_id()"),
        )
        position = sa.Column("position", sa.BigInteger(), sa.Identity(), nullable=False)
        # The log's order is the key: readers scan it, and position (drawn from the
        # identity, so unique anyway) needs no index of its own to be written at each insert.
        keys: list[sa.Constraint] = [
            sa.PrimaryKeyConstraint(
                "transaction_id", "position", name="eventfold_events_log_order"
            )
        ]
        # Stream ids are identifiers: byte order (as in Python and SQLite), whatever the
        # database's locale, so list_streams pages alike everywhere and uses the index.
        stream_id_type = sa.Text(collation="C")
    else:
        json_type = sa.JSON()
        # SQLite serializes writers; its backend numbers transactions itself.
        transaction_id = sa.Column(
            "transaction_id", sa.BigInteger(), nullable=False, server_default=sa.text("0")
        )
        # INTEGER PRIMARY KEY AUTOINCREMENT: positions are never reused.
        position = sa.Column("position", sa.Integer(), primary_key=True, autoincrement=True)
        keys = []  # and an index on (transaction_id, position) below
        stream_id_type = sa.Text()  # SQLite compares text bytewise (BINARY) already
    op.create_table(
        "eventfold_events",
        position,
        transaction_id,
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", stream_id_type, nullable=False),
        sa.Column("stream_version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("data", json_type, nullable=False),
        sa.Column("metadata", json_type, nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.func.now(),
        ),
        *keys,
        sa.UniqueConstraint("event_id", name="eventfold_events_event_id_key"),
        sa.UniqueConstraint(
            "stream_id", "stream_version", name="eventfold_events_stream_version"
        ),
        sqlite_autoincrement=True,
    )
    if postgres:
        return
    op.create_index(
        "eventfold_events_log_order", "eventfold_events", ["transaction_id", "position"]
    )
    op.create_table(
        "eventfold_streams",
        sa.Column("stream_id", stream_id_type, primary_key=True),
        sa.Column("category", stream_id_type, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.func.now(),
        ),
    )
    op.create_index(
        "eventfold_streams_category", "eventfold_streams", ["category", "stream_id"]
    )


def downgrade() -> None:
    """Drop what ``upgrade`` created (and every event with it)."""
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("eventfold_streams_category", table_name="eventfold_streams")
        op.drop_table("eventfold_streams")
        op.drop_index("eventfold_events_log_order", table_name="eventfold_events")
    op.drop_table("eventfold_events")
