"""The store's tables, once, as SQLAlchemy Core metadata; Alembic migrations derive from it.

PostgreSQL gets its native types (xid8, jsonb, uuid, timestamptz); SQLite the nearest.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id type (``pg_current_xact_id()``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


metadata = sa.MetaData()

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "eventfold_events",
    metadata,
    sa.Column("position", BIGINT, sa.Identity(), primary_key=True),
    # The writer's transaction id: readers order and checkpoint by (transaction_id, position)
    # and read only below the oldest running transaction, so no late commit is skipped.
    sa.Column(
        "transaction_id",
        sa.BigInteger().with_variant(Xid8(), "postgresql"),
        nullable=False,
        server_default=sa.text("0"),
    ),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("stream_version", sa.Integer(), nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("schema_version", sa.Integer(), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column(
        "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("stream_id", "stream_version", name="eventfold_events_stream_version"),
)
sa.Index("eventfold_events_log_order", events.c.transaction_id, events.c.position)

streams = sa.Table(
    "eventfold_streams",
    metadata,
    sa.Column("stream_id", sa.Text(), primary_key=True),
    sa.Column("category", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
sa.Index("eventfold_streams_category", streams.c.category, streams.c.stream_id)
