"""eventfold's pytest plugin, used as docs/testing.md shows: its three files, as printed, run
in a project of their own on every backend, and the tests pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def documented_files() -> dict[str, str]:
    """The files of docs/testing.md: each ``python no-run`` block opens with ``# NAME``."""
    page = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python no-run\n# ([\w.]+\.py)[^\n]*\n(.*?)```", page, re.S)
    return {name: body for name, body in blocks}


@pytest.fixture
def ledger_project(pytester: pytest.Pytester) -> pytest.Pytester:
    files = documented_files()
    assert sorted(files) == ["conftest.py", "ledger.py", "test_ledger.py"]
    for name, body in files.items():
        pytester.makefile(".py", **{name.removesuffix(".py"): body})
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return pytester


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"])
def test_the_documented_tests_pass_on_every_backend(
    ledger_project: pytest.Pytester,
    backend: str,
    pg_server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTFOLD_TEST_DATABASE_URL", pg_server_url)
    result = ledger_project.runpytest_subprocess(
        f"--eventfold-backend={backend}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)


def test_without_an_app_the_fixtures_say_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bare="async def test_it(eventfold_running):\n    pass\n")
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named eventfold_app in your conftest.py*"])
