"""What deleting and truncating streams leave: one row per stream ever deleted or truncated.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create eventfold_stream_lifecycle."""
    # Stream ids in the events table's byte order (C collation) on PostgreSQL, so probes
    # from the events' ids use this table's primary key.
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "eventfold_stream_lifecycle",
        sa.Column("stream_id", sa.Text(collation="C" if postgres else None), primary_key=True),
        sa.Column("readable_from", sa.Integer(), nullable=False),
        sa.Column("deleted_version", sa.Integer(), nullable=True),
        sa.Column("hard", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("scavenged_below", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
    )


def downgrade() -> None:
    """Drop eventfold_stream_lifecycle: deleted and truncated streams read whole again
    (until scavenged), and tombstones stop refusing appends."""
    op.drop_table("eventfold_stream_lifecycle")
