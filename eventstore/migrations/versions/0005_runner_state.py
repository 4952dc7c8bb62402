"""The runner's view of each subscriber on its lease row: state, since when, last error.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add state, state_since and last_error to eventfold_leases."""
    with op.batch_alter_table("eventfold_leases") as batch:
        batch.add_column(sa.Column("state", sa.Text(), nullable=True))
        batch.add_column(sa.Column("state_since", sa.Float(), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the runner's state columns (status then knows only who holds a lease)."""
    with op.batch_alter_table("eventfold_leases") as batch:
        batch.drop_column("last_error")
        batch.drop_column("state_since")
        batch.drop_column("state")
