"""The backends the aggregate tests run on, and a migrated SQLite file for sync fixtures."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from eventfold.eventstore.migrate import migrate

BACKENDS = ["memory", "sqlite", "postgres"]


def migrated_sqlite(tmp_path: Path, name: str) -> str:
    """The URL of a new SQLite file migrated to the head.

    Migrates on a thread with its own event loop: sync fixtures must not touch the loop
    pytest-asyncio manages.
    """
    url = f"sqlite:///{tmp_path / name}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, migrate(url)).result()
    return url
