"""Messaging: the inbox, process-manager state and durable deadlines.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create eventfold_inbox, eventfold_process_states and eventfold_deadlines, and (on
    PostgreSQL) the index of events by correlation id."""
    op.create_table(
        "eventfold_inbox",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("message_id", sa.Uuid(), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_index("eventfold_inbox_processed_at", "eventfold_inbox", ["processed_at"])
    op.create_table(
        "eventfold_process_states",
        sa.Column("manager", sa.Text(), primary_key=True),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("state", _JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
    )
    op.create_table(
        "eventfold_deadlines",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("manager", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message", _JSON, nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("eventfold_deadlines_due", "eventfold_deadlines", ["status", "due_at"])
    op.create_index("eventfold_deadlines_owner", "eventfold_deadlines", ["manager", "key"])
    if op.get_bind().dialect.name == "postgresql":
        # `eventfold events trace` finds a conversation's events by correlation id.
        op.create_index(
            "eventfold_events_correlation", "eventfold_events",
            [sa.text("(metadata->>'correlation_id')")],
        )


def downgrade() -> None:
    """Drop the messaging tables (and the correlation index)."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("eventfold_events_correlation", table_name="eventfold_events")
    op.drop_table("eventfold_deadlines")
    op.drop_table("eventfold_process_states")
    op.drop_table("eventfold_inbox")
