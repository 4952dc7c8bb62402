"""The events and streams tables, and PostgreSQL's append function.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out explicitly (not imported from eventstore.schema) because a revision is history:
it must create the same tables forever, whatever the schema module says later. A test checks
that the migrated database and eventstore.schema agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from eventstore.schema import Xid8

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The append path in one round trip. Why it is shaped so:
# - The idempotency probe on the batch's event ids comes first: a retried batch (a client
#   that lost the reply) must return the original result, never a false conflict. It
#   reports 'stored' and the client compares the whole batch (rare path, extra queries
#   are fine) to tell a replay from a clash (DuplicateEventId).
# - The expected-version check is the write on the streams row itself (conditional UPDATE,
#   INSERT .. ON CONFLICT DO NOTHING for a new stream, upsert for ANY): the row lock it takes
#   serializes writers of one stream until commit, and writers of different streams never
#   wait for each other. No table lock anywhere.
# - On a mismatch nothing is inserted; the probe is repeated (an identical batch may have
#   committed while we waited for the row lock) and the actual version is reported.
# - Events go in with one INSERT .. SELECT FROM unnest; the JSON arrives as text, encoded
#   once by the client, and becomes jsonb here. transaction_id defaults to
#   pg_current_xact_id(): readers order by (transaction_id, position) and read only below
#   the oldest running transaction, so an event that commits late is never passed over.
APPEND_FUNCTION = """
CREATE FUNCTION eventfold_append(
    p_stream_id text,
    p_category text,
    p_expected integer,
    p_event_ids uuid[],
    p_event_types text[],
    p_schema_versions integer[],
    p_data text[],
    p_metadata text[],
    OUT o_outcome text,
    OUT o_version integer,
    OUT o_first_position bigint,
    OUT o_last_position bigint,
    OUT o_transaction_id bigint
) LANGUAGE plpgsql AS $$
-- p_expected: >= 0 an exact version (0 = no stream yet), -1 any version, -2 stream exists.
-- o_outcome: 'appended' (o_version is the new version), 'conflict' (o_version is the
-- actual version, nothing written) or 'stored' (an event id of the batch is stored).
DECLARE
    n integer := cardinality(p_event_ids);
BEGIN
    -- No idempotency check up front: a replayed batch violates the unique event_id index
    -- on insert (the client then looks up the original result). A check here would run on
    -- every append, and PL/pgSQL's cached generic plan for `= ANY(array)` can be a
    -- sequential scan once planned against an empty table.
    IF p_expected = -1 THEN
        INSERT INTO eventfold_streams AS s (stream_id, category, version)
        VALUES (p_stream_id, p_category, n)
        ON CONFLICT (stream_id) DO UPDATE SET version = s.version + n, updated_at = now()
        RETURNING s.version INTO o_version;
    ELSIF p_expected = 0 THEN
        INSERT INTO eventfold_streams AS s (stream_id, category, version)
        VALUES (p_stream_id, p_category, n)
        ON CONFLICT (stream_id) DO NOTHING
        RETURNING s.version INTO o_version;
    ELSE
        UPDATE eventfold_streams AS s SET version = s.version + n, updated_at = now()
        WHERE s.stream_id = p_stream_id AND (p_expected = -2 OR s.version = p_expected)
        RETURNING s.version INTO o_version;
    END IF;
    IF o_version IS NULL THEN
        -- A retry after a lost reply expects the version its original moved past: report
        -- 'stored' rather than a false conflict (the client tells a replay from a clash).
        -- One index lookup per id, whatever plan PL/pgSQL cached.
        IF EXISTS (
            SELECT 1 FROM unnest(p_event_ids) AS b(id)
            WHERE EXISTS (SELECT 1 FROM eventfold_events e WHERE e.event_id = b.id)
        ) THEN
            o_outcome := 'stored';
            RETURN;
        END IF;
        SELECT s.version INTO o_version FROM eventfold_streams AS s
        WHERE s.stream_id = p_stream_id;
        o_version := coalesce(o_version, 0);
        o_outcome := 'conflict';
        RETURN;
    END IF;
    WITH inserted AS (
        INSERT INTO eventfold_events AS e
            (stream_id, stream_version, event_id, event_type, schema_version, data, metadata)
        SELECT p_stream_id, o_version - n + b.ord::integer, b.event_id, b.event_type,
               b.schema_version, b.data::jsonb, b.metadata::jsonb
        FROM unnest(p_event_ids, p_event_types, p_schema_versions, p_data, p_metadata)
             WITH ORDINALITY AS b(event_id, event_type, schema_version, data, metadata, ord)
        ORDER BY b.ord
        RETURNING e.position
    )
    SELECT min(i.position), max(i.position) INTO o_first_position, o_last_position
    FROM inserted AS i;
    o_transaction_id := pg_current_xact_id()::text::bigint;
    o_outcome := 'appended';
END
$$
"""


def upgrade() -> None:
    """Create eventfold_events, eventfold_streams and (PostgreSQL) eventfold_append."""
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        json_type: sa.types.TypeEngine[object] = postgresql.JSONB()
        transaction_id = sa.Column(
            "transaction_id", Xid8(), nullable=False,
            server_default=sa.text("pg_current_xact_id()"),
        )
        position = sa.Column("position", sa.BigInteger(), sa.Identity(), primary_key=True)
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
        sa.UniqueConstraint("event_id", name="eventfold_events_event_id_key"),
        sa.UniqueConstraint(
            "stream_id", "stream_version", name="eventfold_events_stream_version"
        ),
        sqlite_autoincrement=True,
    )
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
    if postgres:
        op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    """Drop what ``upgrade`` created (and every event with it)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS eventfold_append("
            "text, text, integer, uuid[], text[], integer[], text[], text[])"
        )
    op.drop_index("eventfold_streams_category", table_name="eventfold_streams")
    op.drop_table("eventfold_streams")
    op.drop_index("eventfold_events_log_order", table_name="eventfold_events")
    op.drop_table("eventfold_events")
