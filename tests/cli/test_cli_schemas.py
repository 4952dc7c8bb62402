"""``eventfold catalog`` and ``eventfold schemas lock / check`` with the test application."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import APP, Invoke, json_lines, one_error_line

from eventfold.cli.execution import EXIT_ERROR, EXIT_INCOMPATIBLE


def test_the_markdown_catalog_lists_types_versions_and_upcasters(invoke: Invoke) -> None:
    result = invoke("--app", APP, "catalog")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("# Event catalog\n\n2 registered event types.")
    assert "| [ItemAdded](#itemadded) | 2 | 1 |" in result.stdout
    assert "| ItemAdded v1 | ItemAdded v2 | transform | `cli_app._one_of_each` |" in result.stdout
    assert '"quantity"' in result.stdout  # the JSON Schema, printed as it is


def test_the_json_catalog_is_one_document(invoke: Invoke) -> None:
    result = invoke("catalog", "--format", "json", "--app", APP)
    assert result.exit_code == 0, result.stderr
    catalog = json.loads(result.stdout)
    assert [(e["type"], e["version"]) for e in catalog["events"]] == [
        ("CartOpened", 1), ("ItemAdded", 2),
    ]


def test_the_catalog_can_go_to_a_file(invoke: Invoke, tmp_path: Path) -> None:
    target = tmp_path / "EVENTS.md"
    result = invoke("--app", APP, "catalog", "--output", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_text().startswith("# Event catalog")


def test_an_unknown_format_is_a_usage_error(invoke: Invoke) -> None:
    assert invoke("--app", APP, "catalog", "--format", "yaml").exit_code == 2


@pytest.fixture
def lock_file(tmp_path: Path) -> Path:
    return tmp_path / "eventfold.schemas.json"


def test_lock_then_check_passes(invoke: Invoke, lock_file: Path) -> None:
    locked = invoke("--app", APP, "schemas", "lock", "--file", str(lock_file))
    assert locked.exit_code == 0, locked.stderr
    assert f"locked 2 event types in {lock_file}" in locked.stdout
    content = json.loads(lock_file.read_text())
    assert content["events"]["ItemAdded"]["version"] == 2

    checked = invoke("--app", APP, "schemas", "check", "--file", str(lock_file))
    assert checked.exit_code == 0, checked.stderr
    assert "compatible" in checked.stdout and "2 locked event types" in checked.stdout
    assert json_lines(invoke("--app", APP, "schemas", "check", "-f", str(lock_file),
                             "--json").stdout) == []


def test_the_default_lock_file_is_in_the_working_directory(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert invoke("--app", APP, "schemas", "lock").exit_code == 0
    assert (tmp_path / "eventfold.schemas.json").exists()
    assert invoke("--app", APP, "schemas", "check").exit_code == 0


def test_an_incompatible_change_fails_with_one_line_each(invoke: Invoke, lock_file: Path) -> None:
    assert invoke("--app", APP, "schemas", "lock", "-f", str(lock_file)).exit_code == 0
    result = invoke("--app", "cli_app:changed_app", "schemas", "check", "-f", str(lock_file))
    assert result.exit_code == EXIT_INCOMPATIBLE
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("CartOpened v1: field 'owner' removed: changed without a "
                               "version bump; raise schema_version to 2")
    assert lines[1].startswith("CartOpened v1: field 'customer' added as a required field")

    as_json = invoke("--app", "cli_app:changed_app", "schemas", "check", "-f", str(lock_file),
                     "--json")
    assert as_json.exit_code == EXIT_INCOMPATIBLE
    assert [(r["event_type"], r["version"], r["field"]) for r in json_lines(as_json.stdout)] == [
        ("CartOpened", 1, "owner"), ("CartOpened", 1, "customer"),
    ]


def test_a_missing_lock_file_says_how_to_write_it(invoke: Invoke, lock_file: Path) -> None:
    result = invoke("--app", APP, "schemas", "check", "--file", str(lock_file))
    assert result.exit_code == EXIT_ERROR
    line = one_error_line(result)
    assert "does not exist" in line and "`eventfold schemas lock`" in line


def test_a_lock_file_that_is_not_json_is_one_line(invoke: Invoke, lock_file: Path) -> None:
    lock_file.write_text("{not json")
    result = invoke("--app", APP, "schemas", "check", "--file", str(lock_file))
    assert result.exit_code == EXIT_ERROR
    assert "is not JSON" in one_error_line(result)
