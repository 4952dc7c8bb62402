"""Snapshots: stores, the every-N-events policy, the scheduled sweep and pruning."""

from snapshots.protocol import Snapshot, SnapshotStore
from snapshots.storage import (
    MemorySnapshotStore,
    SnapshotStorage,
    SqlSnapshotStore,
    due,
    open_snapshots,
)
from snapshots.sweep import SweepReport, TakeSnapshot, schedule_sweep, sweep

__all__ = [
    "MemorySnapshotStore",
    "Snapshot",
    "SnapshotStorage",
    "SnapshotStore",
    "SqlSnapshotStore",
    "SweepReport",
    "TakeSnapshot",
    "due",
    "open_snapshots",
    "schedule_sweep",
    "sweep",
]
