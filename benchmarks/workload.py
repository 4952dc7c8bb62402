"""What a workload is, what it measures, and the small helpers the workload modules share.

A workload module defines one ``Workload``: an eventfold side (run against any store URL:
PostgreSQL, or a SQLite file) and/or a raw asyncpg baseline side. The harness empties the
tables before every run; each side opens its connections, then times only the work.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from eventfold.eventstore import EventRegistry, EventStore, connect


class BenchmarkError(Exception):
    """The benchmark could not run or its result was wrong (say what and what to do)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured run: how many units of work in how many seconds, plus counters."""

    count: int
    seconds: float
    counters: Mapping[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Units of work per second."""
        return self.count / self.seconds if self.seconds > 0 else float("inf")


EventfoldSide = Callable[[str, EventRegistry, int], Awaitable[Figure]]
"""Runs a workload through eventfold: (store URL, registry, size) -> figure."""

BaselineSide = Callable[[str, int], Awaitable[Figure]]
"""Runs a workload with asyncpg and SQL alone: (asyncpg DSN, size) -> figure."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A benchmark workload from ``shared/workloads.md`` and its raw baseline, if any.

    ``size`` is the default amount of work (events, appends or rows, see ``unit``); the
    smoke test passes a tiny one. ``target`` is the minimum eventfold/baseline ratio.
    """

    id: str
    title: str
    unit: str
    size: int
    eventfold: EventfoldSide | None = None
    baseline: BaselineSide | None = None
    baseline_id: str | None = None
    target: float | None = None
    on_sqlite: bool = True
    """Whether the eventfold side also runs on the SQLite backend."""


class Stopwatch:
    """Times a block with the monotonic high-resolution clock: ``with Stopwatch() as sw``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self._start


def split(total: int, parts: int) -> list[int]:
    """``total`` divided into ``parts`` shares that differ by at most one."""
    share, extra = divmod(total, parts)
    return [share + (1 if index < extra else 0) for index in range(parts)]


async def open_store(url: str, registry: EventRegistry, connections: int) -> EventStore:
    """Open the eventfold store with enough pooled connections for ``connections`` writers.

    A pool smaller than the number of writers would make them queue for connections and
    measure the pool rather than the store, so PostgreSQL gets a pool of that size.
    """
    if url.startswith("postgres"):
        return await connect(url, registry, min_size=connections, max_size=connections)
    return await connect(url, registry)
