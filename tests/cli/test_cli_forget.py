"""``eventfold forget SUBJECT``: one line saying what went (or would go), ``--json``, errors."""

from __future__ import annotations

import asyncio
from typing import Annotated

from cli_support import Invoke, json_lines, one_error_line

from eventfold import Event, EventRegistry, PersonalData, open_snapshots
from eventfold.eventstore import FORGOTTEN, connect
from eventfold.eventstore.migrate import migrate
from eventfold.snapshots import Snapshot


class PatientAdmitted(Event):
    patient_id: str
    name: Annotated[str, PersonalData(subject="patient_id")]


def seed(url: str) -> None:
    async def run() -> None:
        await migrate(url)
        async with connect(url, EventRegistry([PatientAdmitted])) as store:
            await store.append("Patient-1", [PatientAdmitted(patient_id="p1", name="Ada")])
            await store.append("Patient-2", [PatientAdmitted(patient_id="p2", name="Alan")])
        snapshots = open_snapshots(url)
        await snapshots.save(Snapshot("Patient-1", 1, 1, {"name": "Ada"}))
        await snapshots.close()

    asyncio.run(run())


def names_and_snapshots(url: str) -> tuple[list[str], dict[str, int]]:
    async def read() -> tuple[list[str], dict[str, int]]:
        async with connect(url, EventRegistry([PatientAdmitted])) as store:
            names = [record.data["name"] for record in await store.read_all()]
        snapshots = open_snapshots(url)
        versions = await snapshots.latest_versions(["Patient-1", "Patient-2"])
        await snapshots.close()
        return names, versions

    return asyncio.run(read())


def test_a_dry_run_says_what_would_go_and_destroys_nothing(
    invoke: Invoke, sqlite_url: str
) -> None:
    seed(sqlite_url)
    result = invoke("--database", sqlite_url, "forget", "p1", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "would destroy the key of subject 'p1': its personal data in 1 events of 1 streams, "
        "and the snapshots of 1 of them"
    )
    assert names_and_snapshots(sqlite_url) == (["Ada", "Alan"], {"Patient-1": 1})


def test_forget_destroys_the_key_and_the_snapshots_and_says_so_in_one_line(
    invoke: Invoke, sqlite_url: str
) -> None:
    seed(sqlite_url)
    result = invoke("--database", sqlite_url, "forget", "p1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "forgot subject 'p1': destroyed its personal data in 1 events of 1 streams, and the "
        "snapshots of 1 of them; rebuild read models that copied personal fields"
    )
    assert names_and_snapshots(sqlite_url) == ([FORGOTTEN, "Alan"], {})

    again = invoke("--database", sqlite_url, "forget", "p1", "--json")
    assert again.exit_code == 0, again.stderr
    assert json_lines(again.stdout) == [{
        "subject": "p1", "dry_run": False, "already_forgotten": True, "events": 1,
        "streams": {"Patient-1": 1}, "snapshotted_streams": 0,
    }]


def test_forget_on_a_store_not_migrated_is_one_error_line(
    invoke: Invoke, sqlite_url: str
) -> None:
    result = invoke("--database", sqlite_url, "forget", "p1")
    assert result.exit_code == 4
    assert "run `eventfold migrate" in one_error_line(result)
