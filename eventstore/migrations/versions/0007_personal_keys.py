"""One key per data subject, for crypto-shredding personal data in events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Written out explicitly (not imported from eventfold.eventstore.schema): a revision is history.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create eventfold_personal_keys."""
    op.create_table(
        "eventfold_personal_keys",
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("key_id", sa.Text(), nullable=False, unique=True),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    """Drop eventfold_personal_keys: every sealed value becomes unreadable (forgotten)."""
    op.drop_table("eventfold_personal_keys")
