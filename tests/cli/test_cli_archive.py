"""``eventfold streams archive`` and ``eventfold streams expire`` on a SQLite file."""

from __future__ import annotations

import asyncio

from cli_support import REGISTRY_EVENTS, Invoke, json_lines, one_error_line

from eventfold.cli.execution import EXIT_USAGE
from eventfold.eventstore import EventRegistry, connect


def _history(url: str, stream_id: str) -> tuple[list[int], list[int]]:
    async def read() -> tuple[list[int], list[int]]:
        async with connect(url, EventRegistry(REGISTRY_EVENTS)) as store:
            hot = [e.stream_version for e in await store.read_stream(stream_id)]
            whole = [e.stream_version for e in await store.read_stream_with_archive(stream_id)]
            return hot, whole

    return asyncio.run(read())


def test_archive_moves_all_but_the_last_event(invoke: Invoke, seeded_url: str) -> None:
    dry = invoke("-d", seeded_url, "streams", "archive", "Cart-1", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.strip() == "would archive 2 events of Cart-1"
    assert _history(seeded_url, "Cart-1") == ([1, 2, 3], [1, 2, 3])

    done = invoke("-d", seeded_url, "streams", "archive", "Cart-1")
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith("archived 2 events of Cart-1 in ")
    assert _history(seeded_url, "Cart-1") == ([3], [1, 2, 3])

    again = invoke("-d", seeded_url, "streams", "archive", "Cart-1", "--json")
    assert json_lines(again.stdout)[0]["events"] == 0


def test_archive_before_a_version_as_json(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "streams", "archive", "Cart-1", "--before", "2", "--json")
    assert result.exit_code == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["stream_id"], line["events"], line["dry_run"]) == ("Cart-1", 1, False)
    assert _history(seeded_url, "Cart-1") == ([2, 3], [1, 2, 3])


def test_a_bad_stream_id_is_one_error_line(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "streams", "archive", " ")
    assert result.exit_code != 0
    assert "stream" in one_error_line(result)


def test_expire_applies_the_applications_policies(invoke: Invoke, seeded_url: str) -> None:
    args = ("-d", seeded_url, "--app", "retention_app:app", "streams", "expire")
    dry = invoke(*args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    [report] = json_lines(dry.stdout)
    assert report["expired"] == [
        {"stream_id": "Cart-1", "action": "archive", "before": 2, "events": 1}
    ]
    assert _history(seeded_url, "Cart-1") == ([1, 2, 3], [1, 2, 3])

    done = invoke(*args)
    assert done.exit_code == 0, done.stderr
    assert done.stdout.startswith(
        "retention examined 2 streams: deleted 0, truncated 0, archived 1 (1 events)"
    )
    assert _history(seeded_url, "Cart-1") == ([2, 3], [1, 2, 3])


def test_expire_needs_an_application(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "streams", "expire")
    assert result.exit_code == EXIT_USAGE
    assert "--app" in one_error_line(result)


def test_expire_counts_ages_from_the_time_given(invoke: Invoke, seeded_url: str) -> None:
    args = ("-d", seeded_url, "--app", "retention_app:app", "streams", "expire", "--json")
    result = invoke(*args, "--dry-run", "--now", "2099-01-01T00:00:00")
    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout)[0]["expired"][0]["stream_id"] == "Cart-1"
