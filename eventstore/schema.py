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

SQLITE_ONLY: dict[Any, Any] = {"dialects": ("sqlite",)}
POSTGRESQL_ONLY: dict[Any, Any] = {"dialects": ("postgresql",)}
"""``info`` of a table or index that the migrations create on one dialect only.
``exists_on`` reads it, so a comparison with a migrated database (tests/test_schema_drift.py)
holds each dialect to what its migrations really create."""


def exists_on(obj: object, dialect: str) -> bool:
    """Whether the migrations create ``obj`` (a table, or an index or column of one) on
    ``dialect`` (``"postgresql"``, ``"sqlite"``)."""
    owners = [obj, getattr(obj, "table", None)]
    return all(
        dialect in owner.info.get("dialects", (dialect,))
        for owner in owners
        if isinstance(owner, sa.Table | sa.Index)
    )

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The events table as SQLite has it. On PostgreSQL, migration 0001 makes (transaction_id,
# position) the primary key instead of position alone (readers' order; one index fewer per
# append) and creates no eventfold_streams table: PostgreSQL checks expected versions with the
# unique (stream_id, stream_version) index and lists streams from the events table. The
# migrations are what the databases hold; these tables serve queries that both share.
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
# SQLite's reading order; on PostgreSQL (transaction_id, position) is the primary key.
sa.Index(
    "eventfold_events_log_order", events.c.transaction_id, events.c.position, info=SQLITE_ONLY
).ddl_if(dialect="sqlite")
# `eventfold events trace` finds a conversation's events by correlation id (PostgreSQL only:
# SQLite databases are small enough to scan).
sa.Index(
    "eventfold_events_correlation", sa.text("(metadata->>'correlation_id')"), _table=events,
    info=POSTGRESQL_ONLY,
).ddl_if(dialect="postgresql")

# SQLite only (see the note on `events`): the stream's version, updated by each append.
streams = sa.Table(
    "eventfold_streams",
    metadata,
    sa.Column("stream_id", sa.Text(), primary_key=True),
    sa.Column("category", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    info=SQLITE_ONLY,
)
sa.Index("eventfold_streams_category", streams.c.category, streams.c.stream_id)

# Streams ever deleted or truncated (see eventfold.eventstore.lifecycle): reads start at
# readable_from, appends check the tombstone, and a scavenge removes the events below
# readable_from that it has not removed yet (scavenged_below). Streams never deleted or
# truncated have no row: their reads and appends pay one primary-key probe that finds none.
stream_lifecycle = sa.Table(
    "eventfold_stream_lifecycle",
    metadata,
    sa.Column("stream_id", sa.Text(), primary_key=True),
    sa.Column("readable_from", sa.Integer(), nullable=False),
    sa.Column("deleted_version", sa.Integer(), nullable=True),
    sa.Column("hard", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("scavenged_below", sa.Integer(), nullable=False, server_default=sa.text("1")),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

# --- Projections and other subscribers of the global log -----------------------------------

checkpoints = sa.Table(
    "eventfold_checkpoints",
    metadata,
    # The subscriber's name (a projection's name; "<name>#rebuild" for a rebuild's shadow).
    sa.Column("name", sa.Text(), primary_key=True),
    # The global position (transaction_id, position) of the last event the subscriber
    # processed. Advanced by compare-and-set on the previous value in the same transaction
    # as the subscriber's writes, so two holders can never both commit a batch.
    sa.Column("transaction_id", sa.BigInteger(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    # Events per second over the last batches, for status output.
    sa.Column("rate", sa.Float(), nullable=False, server_default=sa.text("0")),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    # Set when a subscriber with the "halt" failure policy parked an event: it processes
    # nothing more until its parked events are retried or skipped.
    sa.Column("halted_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("halted_reason", sa.Text(), nullable=True),
    # A partitioned subscriber has one checkpoint per partition ("<name>/<partition>"):
    # which one this is, and of how many (a runner refuses to start when the declared
    # count differs: the count changes only through a rebuild).
    sa.Column("partition", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("partitions", sa.Integer(), nullable=False, server_default=sa.text("1")),
)

parked_events = sa.Table(
    "eventfold_parked_events",
    metadata,
    sa.Column("id", BIGINT, sa.Identity(), primary_key=True),
    sa.Column("subscriber", sa.Text(), nullable=False),
    sa.Column("transaction_id", sa.BigInteger(), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("event_id", sa.Uuid(), nullable=False),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("traceback", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    # NULL when the event itself failed; otherwise the global position of the failed event
    # of the same stream it waits behind (per-stream order is kept).
    sa.Column("blocked_by_transaction_id", sa.BigInteger(), nullable=True),
    sa.Column("blocked_by_position", sa.BigInteger(), nullable=True),
    sa.Column(
        "parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint(
        "subscriber", "transaction_id", "position", "event_type",
        name="eventfold_parked_events_event",
    ),
)
sa.Index(
    "eventfold_parked_events_stream",
    parked_events.c.subscriber,
    parked_events.c.stream_id,
    parked_events.c.transaction_id,
    parked_events.c.position,
)

leases = sa.Table(
    "eventfold_leases",
    metadata,
    # What is held: a subscriber's name (or "<name>#rebuild" while a rebuild runs).
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("holder", sa.Text(), nullable=False),
    # Grows with every new holder: a holder renews or releases only its own tenure.
    sa.Column("token", sa.BigInteger(), nullable=False),
    # Seconds since the epoch on the database's clock (one clock for every machine).
    sa.Column("acquired_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    # The holder's view, for `status` in any process: what it is doing with the subscriber
    # ("running", "retrying" after an error such as an outage, "halted"), since when (same
    # clock), and the last error while retrying.
    sa.Column("state", sa.Text(), nullable=True),
    sa.Column("state_since", sa.Float(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    # The partition held, of how many ("<name>/<partition>"); a runner's membership row
    # for a partitioned subscriber ("<name>@<holder>") has partition -1.
    sa.Column("partition", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("partitions", sa.Integer(), nullable=False, server_default=sa.text("1")),
)

snapshots = sa.Table(
    "eventfold_snapshots",
    metadata,
    sa.Column("stream_id", sa.Text(), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    # The aggregate class's state_version when taken: a snapshot of another state shape is
    # ignored, never applied.
    sa.Column("state_version", sa.Integer(), nullable=False),
    sa.Column("state", JSON, nullable=False),
    sa.Column(
        "taken_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

# --- Messaging: inbox, process managers, durable timeouts --------------------------------

inbox = sa.Table(
    "eventfold_inbox",
    metadata,
    # Which consumer processed the message, and the message's id (an event_id): recorded in
    # the same transaction as the consumer's effect, so a redelivery is a no-op.
    sa.Column("consumer", sa.Text(), primary_key=True),
    sa.Column("message_id", sa.Uuid(), primary_key=True),
    sa.Column(
        "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)
sa.Index("eventfold_inbox_processed_at", inbox.c.processed_at)

process_states = sa.Table(
    "eventfold_process_states",
    metadata,
    # One row per process-manager instance, keyed by the correlation key taken from events.
    sa.Column("manager", sa.Text(), primary_key=True),
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("state", JSON, nullable=False),
    # Grows with every change; written by compare-and-set.
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
)

deadlines = sa.Table(
    "eventfold_deadlines",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("manager", sa.Text(), nullable=False),
    sa.Column("key", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("message", JSON, nullable=False),
    # scheduled -> fired | cancelled; a due deadline fires at least once.
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("eventfold_deadlines_due", deadlines.c.status, deadlines.c.due_at)
sa.Index("eventfold_deadlines_owner", deadlines.c.manager, deadlines.c.key)

# --- Personal data: one key per data subject (crypto-shredding) ---------------------------

personal_keys = sa.Table(
    "eventfold_personal_keys",
    metadata,
    sa.Column("subject", sa.Text(), primary_key=True),
    # Random, stored with every value the key seals (it says nothing about the subject).
    sa.Column("key_id", sa.Text(), nullable=False, unique=True),
    # The AES-256 key; NULL once the subject is forgotten (the row stays, so no new key
    # is ever made for it).
    sa.Column("secret", sa.LargeBinary(), nullable=True),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True),
)

# --- The archive: events moved out of the hot table (``EventStore.archive_stream``) ---------

events_archive = sa.Table(
    "eventfold_events_archive",
    metadata,
    # The event's envelope as it was in eventfold_events, kept as it was: the position and
    # transaction id it had in the global log (so merged reads keep the log's order), its
    # stream version and its recorded time. On PostgreSQL (transaction_id, position) is the
    # primary key, as in the events table.
    sa.Column("position", BIGINT, primary_key=True, autoincrement=False),
    sa.Column(
        "transaction_id", sa.BigInteger().with_variant(Xid8(), "postgresql"), nullable=False
    ),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("stream_version", sa.Integer(), nullable=False),
    sa.Column("event_type", sa.Text(), nullable=False),
    sa.Column("schema_version", sa.Integer(), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "stream_id", "stream_version", name="eventfold_events_archive_stream_version"
    ),
)
