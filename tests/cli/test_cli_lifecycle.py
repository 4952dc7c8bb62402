"""``eventfold streams delete|truncate`` and ``eventfold scavenge``, on a SQLite file and on
real PostgreSQL: dry runs change nothing, errors are one line with their exit code, a
scavenge shows its progress."""

from __future__ import annotations

import pytest
from cli_support import Invoke, append_cart_events, json_lines, one_error_line

from eventfold.cli.execution import EXIT_CONFLICT, EXIT_NOT_FOUND, EXIT_USAGE


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, seeded_url: str) -> str:
    """A store holding Cart-1 (3 events), Cart-2 (1) and Wishlist-9 (1)."""
    if request.param == "sqlite":
        return seeded_url
    pg: str = request.getfixturevalue("pg_clean_url")
    append_cart_events(pg)
    return pg


def _versions(invoke: Invoke, url: str, stream_id: str) -> list[int]:
    shown = invoke("-d", url, "streams", "show", stream_id, "--json")
    assert shown.exit_code == 0, shown.stderr
    return [row["stream_version"] for row in json_lines(shown.stdout)]


def _scavenge(invoke: Invoke, url: str, *options: str) -> dict[str, object]:
    result = invoke("-d", url, "scavenge", "--json", *options)
    assert result.exit_code == 0, result.stderr
    [row] = json_lines(result.stdout)
    return row


def test_delete_dry_run_changes_nothing_then_delete_hides_the_stream(
    invoke: Invoke, url: str
) -> None:
    dry = invoke("-d", url, "streams", "delete", "Cart-1", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would delete stream 'Cart-1' at version 3 (soft delete)" in dry.stdout
    assert _versions(invoke, url, "Cart-1") == [1, 2, 3]

    done = invoke("-d", url, "streams", "delete", "Cart-1", "--expected-version", "3")
    assert done.exit_code == 0, done.stderr
    assert "deleted stream 'Cart-1' (soft): StreamDeleted is its version 4" in done.stdout
    shown = invoke("-d", url, "streams", "show", "Cart-1")
    assert shown.exit_code == EXIT_NOT_FOUND
    assert "stream 'Cart-1' was deleted (soft) at version 4" in one_error_line(shown)
    assert "appending to it recreates it" in one_error_line(shown)


def test_a_hard_delete_refuses_later_deletes_in_one_line(invoke: Invoke, url: str) -> None:
    done = invoke("-d", url, "streams", "delete", "Cart-2", "--hard", "--json")
    assert done.exit_code == 0, done.stderr
    assert json_lines(done.stdout) == [
        {
            "stream_id": "Cart-2",
            "dry_run": False,
            "hard": True,
            "version": 1,
            "deleted_at": 2,
        }
    ]
    again = invoke("-d", url, "streams", "delete", "Cart-2")
    assert again.exit_code == EXIT_CONFLICT
    assert "stream 'Cart-2' was deleted for good" in one_error_line(again)
    shown = invoke("-d", url, "streams", "show", "Cart-2", "--json")
    assert shown.exit_code == EXIT_NOT_FOUND
    assert "'Cart-2' was hard-deleted (a tombstone) at version 2" in one_error_line(shown)


def test_list_and_show_leave_deleted_streams_out(invoke: Invoke, url: str) -> None:
    assert invoke("-d", url, "streams", "delete", "Cart-1").exit_code == 0
    assert invoke("-d", url, "streams", "delete", "Cart-2", "--hard").exit_code == 0

    def listed() -> list[object]:
        result = invoke("-d", url, "streams", "list", "--json")
        assert result.exit_code == 0, result.stderr
        return [row["stream_id"] for row in json_lines(result.stdout)]

    assert listed() == ["Wishlist-9"]
    empty = invoke("-d", url, "streams", "list", "--category", "Cart")
    assert empty.exit_code == 0, empty.stderr
    assert "no streams of category 'Cart'" in empty.stdout
    assert invoke("-d", url, "streams", "show", "Cart-1").exit_code == EXIT_NOT_FOUND


def test_delete_errors_are_one_line(invoke: Invoke, url: str) -> None:
    unknown = invoke("-d", url, "streams", "delete", "Cart-404")
    assert unknown.exit_code == EXIT_NOT_FOUND
    assert "stream 'Cart-404' has no events" in one_error_line(unknown)
    stale = invoke("-d", url, "streams", "delete", "Cart-1", "--expected-version", "2")
    assert stale.exit_code == EXIT_CONFLICT
    assert "is at version 3" in one_error_line(stale)
    assert _versions(invoke, url, "Cart-1") == [1, 2, 3]


def test_truncate_hides_the_beginning_of_a_stream(invoke: Invoke, url: str) -> None:
    dry = invoke("-d", url, "streams", "truncate", "Cart-1", "--before", "3", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would truncate stream 'Cart-1' (at version 3) before 3" in dry.stdout
    assert _versions(invoke, url, "Cart-1") == [1, 2, 3]

    done = invoke("-d", url, "streams", "truncate", "Cart-1", "--before", "3")
    assert done.exit_code == 0, done.stderr
    assert _versions(invoke, url, "Cart-1") == [3, 4]

    wrong = invoke("-d", url, "streams", "truncate", "Cart-1", "--before", "9")
    assert wrong.exit_code == EXIT_USAGE
    assert "give a version from 1 to 5" in one_error_line(wrong)


def test_scavenge_dry_run_then_scavenge_with_progress(invoke: Invoke, url: str) -> None:
    assert invoke("-d", url, "streams", "delete", "Cart-1").exit_code == 0
    assert invoke("-d", url, "streams", "truncate", "Cart-2", "--before", "2").exit_code == 0
    planned = _scavenge(invoke, url, "--dry-run")
    assert planned == {"dry_run": True, "events": 4, "streams": {"Cart-1": 3, "Cart-2": 1}}
    assert _scavenge(invoke, url, "--dry-run") == planned

    done = invoke("-d", url, "scavenge")
    assert done.exit_code == 0, done.stderr
    assert "removed 4 events of 2 streams" in done.stdout
    assert "Cart-1: 3" in done.stdout
    assert "scavenging" in done.stderr and "ev/s" in done.stderr and "ETA" in done.stderr
    assert _scavenge(invoke, url) == {"dry_run": False, "events": 0, "streams": {}}
    assert _versions(invoke, url, "Cart-2") == [2]
    assert _versions(invoke, url, "Wishlist-9") == [1]
