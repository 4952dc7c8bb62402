"""Every workload the harness knows, in the order it runs them.

To add one (W4, W5, ...): write a module defining ``WORKLOAD`` and add it to ``WORKLOADS``.
"""

from __future__ import annotations

from collections.abc import Iterable

from benchmarks import (
    l3_copy,
    w1_append_single,
    w2_append_batch,
    w3_contention,
    w4_aggregate_load,
    w5_log_read,
    w6_projection_rebuild,
    w7_partitioned_rebuild,
    w8_runners_keeping_up,
    w9_bulk_copy,
    w10_archive,
)
from benchmarks.workload import BenchmarkError, Workload

WORKLOADS: tuple[Workload, ...] = (
    w1_append_single.WORKLOAD,
    w2_append_batch.WORKLOAD,
    w3_contention.WORKLOAD,
    l3_copy.WORKLOAD,
    *w4_aggregate_load.WORKLOADS,
    w5_log_read.WORKLOAD,
    w6_projection_rebuild.WORKLOAD,
    w9_bulk_copy.WORKLOAD,
    *w7_partitioned_rebuild.WORKLOADS,
    w8_runners_keeping_up.WORKLOAD,
    w10_archive.WORKLOAD,
)
"""The workloads in run order."""


def select(ids: Iterable[str] | None) -> list[Workload]:
    """The workloads with the given ids (all when None), in run order.

    A baseline id (``L1``) selects the workload it belongs to; a family id (``W4``) selects
    its variants (``W4-1K``, ``W4-10K-SNAP``...).
    """
    if ids is None:
        return list(WORKLOADS)
    wanted = {item.strip().upper() for item in ids if item.strip()}
    known = {w.id for w in WORKLOADS} | {w.baseline_id for w in WORKLOADS if w.baseline_id}
    known |= {w.id.partition("-")[0] for w in WORKLOADS}
    unknown = sorted(wanted - known)
    if unknown:
        raise BenchmarkError(
            f"unknown workload {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
        )
    return [
        w for w in WORKLOADS
        if w.id in wanted or w.baseline_id in wanted or w.id.partition("-")[0] in wanted
    ]
