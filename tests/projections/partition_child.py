"""The application of the partitioned multi-process tests (``eventfold run --app
partition_child:app``).

``mp_split`` is served as ``EVENTFOLD_MP_PARTITIONS`` partitions (4 by default). It inserts
one row per applied event with no unique key, in an identity order: an event applied twice
shows up as two rows, and the rows of a stream must follow its versions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa

from eventfold import App
from eventfold.eventstore import Event
from eventfold.projections import Projection
from eventfold.projections.projection import ReadModel
from eventfold.projections.subscriber import Delivery

PARTITIONS_ENV = "EVENTFOLD_MP_PARTITIONS"


class Counted(Event):
    """An event of the partitioned tests; ``seq`` numbers events across all streams."""

    seq: int


class Split(Projection):
    """One row per applied event, in the order applied."""

    name = "mp_split"
    metadata = sa.MetaData()
    applied = sa.Table(
        "mp_split",
        metadata,
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
    )
    partitions = int(os.environ.get(PARTITIONS_ENV, "4"))

    @property
    def event_types(self) -> frozenset[str] | None:
        """``Counted`` events."""
        return frozenset({Counted.event_type})

    async def apply_batch(self, batch: Sequence[Delivery], model: ReadModel) -> None:
        """Insert the batch's rows in order (the same effect as one by one)."""
        if batch:
            await model.connection.execute(
                model.tables["mp_split"].insert(),
                [
                    {
                        "event_id": d.record.event_id, "stream_id": d.record.stream_id,
                        "version": d.record.stream_version, "pid": os.getpid(),
                    }
                    for d in batch
                ],
            )


app = App(events=[Counted], projections=[Split()])
"""The application the runner processes serve."""
