"""Snapshots: stores, the every-N-events policy, the scheduled sweep and pruning."""

from eventfold.snapshots.protocol import Snapshot, SnapshotStore
from eventfold.snapshots.storage import (
    MemorySnapshotStore,
    SnapshotStorage,
    SqlSnapshotStore,
    due,
    open_snapshots,
)
from eventfold.snapshots.sweep import SweepReport, TakeSnapshot, schedule_sweep, sweep
from eventfold.snapshots.transfer import copy_snapshots

__all__ = [
    "MemorySnapshotStore",
    "Snapshot",
    "SnapshotStorage",
    "SnapshotStore",
    "SqlSnapshotStore",
    "SweepReport",
    "TakeSnapshot",
    "copy_snapshots",
    "due",
    "open_snapshots",
    "schedule_sweep",
    "sweep",
]
