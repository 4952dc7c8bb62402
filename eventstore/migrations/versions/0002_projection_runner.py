"""The projection runner's tables: checkpoints, parked events, leases.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create eventfold_checkpoints, eventfold_parked_events and eventfold_leases."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "eventfold_checkpoints",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("halted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("halted_reason", sa.Text(), nullable=True),
    )
    parked_id = (
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True)
        if postgres
        else sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)
    )
    op.create_table(
        "eventfold_parked_events",
        parked_id,
        sa.Column("subscriber", sa.Text(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("blocked_by_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("blocked_by_position", sa.BigInteger(), nullable=True),
        sa.Column(
            "parked_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.func.now(),
        ),
        sa.UniqueConstraint(
            "subscriber", "transaction_id", "position", "event_type",
            name="eventfold_parked_events_event",
        ),
    )
    op.create_index(
        "eventfold_parked_events_stream",
        "eventfold_parked_events",
        ["subscriber", "stream_id", "transaction_id", "position"],
    )
    op.create_table(
        "eventfold_leases",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    """Drop the runner's tables (checkpoints, parked events and leases are lost)."""
    op.drop_table("eventfold_leases")
    op.drop_index("eventfold_parked_events_stream", table_name="eventfold_parked_events")
    op.drop_table("eventfold_parked_events")
    op.drop_table("eventfold_checkpoints")
