"""``--app module:attribute`` (or ``EVENTFOLD_APP``): where it is needed, where it is wrong,
and what it changes for commands that work without it."""

from __future__ import annotations

import pytest
from cli_support import APP, Invoke, json_lines, one_error_line

from eventfold import App
from eventfold.app import load_app
from eventfold.cli.execution import EXIT_USAGE
from eventfold.config import Settings
from eventfold.errors import AppNotFound, AppRequired

APP_COMMANDS = [
    ["snapshots", "take", "Cart-1"],
    ["snapshots", "sweep"],
    ["snapshots", "prune"],
    ["catalog"],
    ["schemas", "lock"],
    ["schemas", "check"],
    ["projections", "status"],
    ["projections", "rebuild", "cart_totals"],
    ["projections", "reset", "cart_totals"],
    ["projections", "parked"],
    ["projections", "retry", "cart_totals"],
    ["projections", "skip", "cart_totals", "01a2056b-19a9-717b-a499-0386a68ea06c"],
    ["run"],
]


@pytest.mark.parametrize("command", APP_COMMANDS, ids=" ".join)
def test_a_command_that_needs_the_app_says_how_to_name_it(
    invoke: Invoke, seeded_url: str, command: list[str]
) -> None:
    result = invoke("--database", seeded_url, *command)
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result)
    assert line.startswith(f"error: `eventfold {command[0]}")
    assert "needs the application: pass --app module:attribute" in line
    assert "EVENTFOLD_APP" in line


@pytest.mark.parametrize(("spec", "reason"), [
    ("no_such_module:app", "module 'no_such_module' cannot be imported"),
    ("cli_app:nothing_here", "cli_app.nothing_here is nothing, not an App"),
    ("cli_app:not_an_app", "cli_app.not_an_app is str, not an App"),
    ("cli_app:not-an-identifier", "not of the form module:attribute"),
    (":app", "not of the form module:attribute"),
])
def test_an_app_that_cannot_be_loaded_is_one_line(
    invoke: Invoke, seeded_url: str, spec: str, reason: str
) -> None:
    result = invoke("--database", seeded_url, "--app", spec, "projections", "status")
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result)
    assert f"cannot load the application {spec!r}" in line and reason in line


def test_a_module_that_fails_on_import_is_named(
    invoke: Invoke, seeded_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    (tmp_path / "broken_cli_app.py").write_text("raise RuntimeError('no config file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("--database", seeded_url, "--app", "broken_cli_app", "catalog")
    assert result.exit_code == EXIT_USAGE
    assert "importing 'broken_cli_app' raised RuntimeError: no config file" in one_error_line(
        result
    )


def test_the_app_comes_from_the_environment(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "projections", "status", "--json",
                    env={"EVENTFOLD_APP": APP})
    assert result.exit_code == 0, result.stderr
    names = [entry["name"] for entry in json_lines(result.stdout)[0]["projections"]]
    assert names == ["cart_totals", "welcome"]


def test_the_app_after_the_command_wins(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "--app", "cli_app:not_an_app",
                    "projections", "status", "--app", APP, "--json",
                    env={"EVENTFOLD_APP": "no_such_module"})
    assert result.exit_code == 0, result.stderr


def test_streams_show_reads_through_the_apps_upcasters(invoke: Invoke, seeded_url: str) -> None:
    """Stored as ItemAdded v1; the application reads them as v2, with a quantity."""
    stored = invoke("--database", seeded_url, "streams", "show", "Cart-1", "--json")
    assert [(r["event_type"], r["schema_version"]) for r in json_lines(stored.stdout)][1:] == [
        ("ItemAdded", 1), ("ItemAdded", 1),
    ]
    upcast = invoke("--database", seeded_url, "--app", APP, "streams", "show", "Cart-1",
                    "--json")
    assert upcast.exit_code == 0, upcast.stderr
    rows = json_lines(upcast.stdout)[1:]
    assert [(r["event_type"], r["schema_version"]) for r in rows] == [
        ("ItemAdded", 2), ("ItemAdded", 2),
    ]
    assert rows[0]["data"] == {"sku": "tea", "price": "3.10", "quantity": 1}

    table = invoke("--database", seeded_url, "streams", "show", "Cart-1", "--app", APP)
    assert table.exit_code == 0 and "ItemAdded v2" in table.stdout


def test_settings_load_the_app_once_named() -> None:
    """The library behind the option: ``Settings`` and ``load_app``."""
    settings = Settings.from_environment({"EVENTFOLD_APP": APP})
    app = settings.app()
    assert isinstance(app, App) and app is load_app(APP)
    assert settings.registry() is app.registry
    assert Settings().registry() is not app.registry  # without an app: stored JSON only
    with pytest.raises(AppRequired, match="`eventfold run` needs the application"):
        Settings().app("`eventfold run`")
    with pytest.raises(AppNotFound):
        load_app("cli_app:not_an_app")
    assert load_app("cli_app") is app  # module alone means module:app
