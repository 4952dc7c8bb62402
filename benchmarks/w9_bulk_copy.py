"""W9 bulk copy, against L3 (COPY of as many rows: the bulk-load ceiling).

The source is the log of ``benchmarks.global_log`` (1,000,000 events over 10,000 streams,
as W5 reads it), loaded outside the clock. The clock then times what ``eventfold copy
SOURCE TARGET`` runs (``eventfold.eventstore.transfer.copy_store`` on stores opened with an
empty registry, as the command opens them) into a new, migrated database of its own beside
the source (a sibling file on SQLite): reading the source in pages, writing each page to the
target with ``COPY`` in a transaction of its own, and the final verification, which reads
both logs again and compares their counts and checksums.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks import l3_copy
from benchmarks.database import drop_database, ensure_database, migrate_store
from benchmarks.global_log import load_store
from benchmarks.workload import BenchmarkError, Figure, Stopwatch, Workload
from eventfold.eventstore import EventRegistry, connect
from eventfold.eventstore.transfer import copy_store


def _target_url(url: str) -> str:
    """A store beside the source: a database of its own, or a sibling SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        return str(parsed.set(database=parsed.database + ".w9-target.db"))
    return parsed.set(database=f"{parsed.database}_w9_target").render_as_string(
        hide_password=False
    )


def _remove_sqlite_files(url: str) -> None:
    path = make_url(url).database
    assert path is not None
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(path + suffix).unlink()


async def _fresh(url: str) -> None:
    if url.startswith("sqlite"):
        _remove_sqlite_files(url)
    else:
        await drop_database(url)
        await ensure_database(url)
    await migrate_store(url)


async def _discard(url: str) -> None:
    if url.startswith("sqlite"):
        _remove_sqlite_files(url)
    else:
        await drop_database(url)


async def run_eventfold(url: str, registry: EventRegistry, size: int) -> Figure:
    """Copy a store of ``size`` events into an empty one, verified."""
    await load_store(url, size)
    target_url = _target_url(url)
    await _fresh(target_url)
    try:
        async with connect(url, EventRegistry()) as source, connect(
            target_url, EventRegistry()
        ) as target:
            # Untimed: another session's open transaction may still hide the loaded events.
            loaded = await source.committed_head()
            while (head := await source.head()) < loaded:
                await source.wait_for_events(head, 1.0)
            with Stopwatch() as sw:
                result = await copy_store(source, target)
    finally:
        await _discard(target_url)
    if result.events != size or result.written != size:
        raise BenchmarkError(
            f"W9: copied {result.written} and verified {result.events} events of {size}"
        )
    return Figure(size, sw.seconds)


WORKLOAD = Workload(
    id="W9",
    title="bulk copy into an empty store (eventfold copy), verified",
    unit="events/s",
    size=1_000_000,
    eventfold=run_eventfold,
    baseline=l3_copy.run_baseline,
    baseline_id="L3",
    target=0.5,
)
"""W9 against L3 (target: eventfold at least 0.5 of the baseline)."""
