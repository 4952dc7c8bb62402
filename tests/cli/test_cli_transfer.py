"""``eventfold copy``, ``export`` and ``import`` as a user runs them: SQLite and PostgreSQL,
resumed after the process is killed, refusals as one line."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import pytest
from cli_support import (
    Invoke,
    append_cart_events,
    child_environment,
    json_lines,
    one_error_line,
)

from benchmarks.global_log import load_postgres_store
from eventfold import migrate
from eventfold.eventstore import (
    START,
    Event,
    EventRegistry,
    PersonalData,
    RecordedEvent,
    connect,
)
from eventfold.eventstore.engine import create_engine
from eventfold.snapshots import Snapshot, SqlSnapshotStore

EVENTFOLD = str(Path(sys.executable).parent / "eventfold")
"""The console script of this interpreter's installation."""


def _log(url: str) -> list[RecordedEvent]:
    async def read() -> list[RecordedEvent]:
        async with connect(url, EventRegistry()) as store:
            out: list[RecordedEvent] = []
            after = START
            while page := await store.read_all(after=after, limit=1000):
                out.extend(page)
                after = page[-1].global_position
            return out

    return asyncio.run(read())


def _facts(records: list[RecordedEvent]) -> list[tuple[object, ...]]:
    return [
        (r.event_id, r.stream_id, r.stream_version, r.event_type, r.schema_version, r.data,
         r.metadata, r.recorded_at)
        for r in records
    ]


def test_copy_between_sqlite_files_then_again_copies_nothing(
    invoke: Invoke, seeded_url: str, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    asyncio.run(migrate(target))
    first = invoke("copy", seeded_url, target, "--snapshots", "--json")
    assert first.exit_code == 0, first.stderr
    (row,) = json_lines(first.stdout)
    assert (row["written"], row["events"]) == (5, 5)
    again = invoke("copy", seeded_url, target)
    assert again.exit_code == 0, again.stderr
    assert "copied 0 events" in again.stdout and "5 were there from an earlier run" in again.stdout
    assert _facts(_log(target)) == _facts(_log(seeded_url))


def test_copy_into_a_store_of_other_events_is_refused_in_one_line(
    invoke: Invoke, seeded_url: str, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'other.db'}"
    asyncio.run(migrate(target))
    append_cart_events(target)  # the same streams, but other events (other ids)
    result = invoke("copy", seeded_url, target)
    assert result.exit_code == 1
    assert "will not copy into" in one_error_line(result)
    assert len(_log(target)) == 5


def test_export_then_import_through_a_pipe(seeded_url: str, tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'piped.db'}"
    asyncio.run(migrate(target))
    ran = subprocess.run(
        f"{EVENTFOLD} --database {seeded_url} export | "
        f"{EVENTFOLD} --database {target} import - --json",
        shell=True, capture_output=True, text=True, env=child_environment(), timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    (row,) = json_lines(ran.stdout)
    assert (row["written"], row["events"]) == (5, 5)
    assert _facts(_log(target)) == _facts(_log(seeded_url))


def test_import_of_a_file_that_is_not_an_export_names_the_line(
    invoke: Invoke, sqlite_url: str, tmp_path: Path
) -> None:
    asyncio.run(migrate(sqlite_url))
    dump = tmp_path / "dump.jsonl"
    dump.write_text('{"specversion": "1.0", "source": "x", "id": "a"}\n')
    result = invoke("--database", sqlite_url, "import", str(dump))
    assert result.exit_code == 1
    assert "line 1" in one_error_line(result)


@pytest.mark.usefixtures("pg_server_url")
def test_a_copy_killed_midway_resumes_when_run_again(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    source = pg_fresh_url
    asyncio.run(load_postgres_store(source, 200_000))
    target = f"sqlite:///{tmp_path / 'killed.db'}"
    asyncio.run(migrate(target))
    command = [EVENTFOLD, "copy", source, target]
    child = subprocess.Popen(command, env=child_environment(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        copied = 0
        while copied == 0 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
            copied = _count(target)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert 0 < copied < 200_000, copied
    resumed = subprocess.run([*command, "--json"], env=child_environment(),
                             capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stderr
    (row,) = json_lines(resumed.stdout)
    assert row["events"] == 200_000 and row["written"] <= 200_000 - copied
    assert _count(target) == 200_000


def _count(sqlite_url: str) -> int:
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        try:
            return int(db.execute("SELECT count(*) FROM eventfold_events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0



def test_copy_with_snapshots_brings_them_along(
    invoke: Invoke, seeded_url: str, tmp_path: Path
) -> None:
    async def snapshot(url: str) -> None:
        store = SqlSnapshotStore(create_engine(url))
        try:
            await store.save(Snapshot("Cart-1", 3, 1, {"items": 2}))
        finally:
            await store.close()

    async def latest(url: str) -> Snapshot | None:
        store = SqlSnapshotStore(create_engine(url))
        try:
            return await store.latest("Cart-1", state_version=1)
        finally:
            await store.close()

    asyncio.run(snapshot(seeded_url))
    target = f"sqlite:///{tmp_path / 'with-snapshots.db'}"
    asyncio.run(migrate(target))
    assert invoke("copy", seeded_url, target).exit_code == 0
    assert asyncio.run(latest(target)) is None
    assert invoke("copy", "--snapshots", seeded_url, target).exit_code == 0
    assert asyncio.run(latest(target)) == Snapshot("Cart-1", 3, 1, {"items": 2})


class CustomerRegistered(Event):
    customer_id: str
    name: Annotated[str, PersonalData(subject="customer_id")]


def _personal_store(url: str) -> None:
    async def fill() -> None:
        await migrate(url)
        async with connect(url, EventRegistry([CustomerRegistered])) as store:
            await store.append("Customer-ada", [
                CustomerRegistered(customer_id="ada", name="Ada Lovelace")
            ])

    asyncio.run(fill())


def test_export_of_personal_data_is_refused_in_one_line_unless_revealed(
    invoke: Invoke, tmp_path: Path
) -> None:
    source, target = (f"sqlite:///{tmp_path / name}" for name in ("people.db", "moved.db"))
    _personal_store(source)
    asyncio.run(migrate(target))
    dump = tmp_path / "people.jsonl"
    refused = invoke("--database", source, "export", "--output", str(dump))
    assert refused.exit_code == 1
    assert "--reveal-personal-data" in one_error_line(refused)
    exported = invoke(
        "--database", source, "export", "--reveal-personal-data", "--output", str(dump)
    )
    assert exported.exit_code == 0, exported.stderr
    assert "Ada Lovelace" in dump.read_text()
    imported = invoke("--database", target, "import", str(dump), "--json")
    assert imported.exit_code == 0, imported.stderr

    async def read() -> str:
        async with connect(target, EventRegistry([CustomerRegistered])) as store:
            return str((await store.read_all())[0].data["name"])

    assert asyncio.run(read()) == "Ada Lovelace"
    assert "Ada Lovelace" not in str(_log(target)[0].data)  # sealed again in the store
