"""Partitioned subscribers: which partition of how many a checkpoint or lease row is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add partition and partitions to eventfold_checkpoints and eventfold_leases (existing
    rows are unpartitioned: partition 0 of 1)."""
    for table in ("eventfold_checkpoints", "eventfold_leases"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(
                "partition", sa.Integer(), nullable=False, server_default=sa.text("0")
            ))
            batch.add_column(sa.Column(
                "partitions", sa.Integer(), nullable=False, server_default=sa.text("1")
            ))


def downgrade() -> None:
    """Drop the partition columns (partitioned subscribers must be rebuilt unpartitioned)."""
    for table in ("eventfold_leases", "eventfold_checkpoints"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("partitions")
            batch.drop_column("partition")
