"""Fixtures of the console's tests: the example shop's SQLite database with one parked
event, fresh for each test, and the poison file that parks it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import pytest
from ui_app import POISON_ENV
from ui_support import POISONED, SCREENSHOTS, copy_database, fill_shop, screenshots_taken


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop's database after one day and a parked order, built once per session."""
    directory = tmp_path_factory.mktemp("ui-shop")
    poison = directory / "poison"
    poison.write_text(POISONED)
    database = directory / "shop.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(POISON_ENV, str(poison))
        # In a thread of its own: a session fixture must not touch pytest-asyncio's loops.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, fill_shop(f"sqlite:///{database}")).result()
    return database


@pytest.fixture
def poison_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The poison file, naming the refused customer; remove it to fix the audit."""
    poison = tmp_path / "poison"
    poison.write_text(POISONED)
    monkeypatch.setenv(POISON_ENV, str(poison))
    return poison


@pytest.fixture
def shop_url(shop_template: Path, tmp_path: Path, poison_file: Path) -> str:
    """A copy of the shop's database for one test (actions change it)."""
    database = tmp_path / "shop.db"
    copy_database(shop_template, database)
    return f"sqlite:///{database}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the browser tests left their pictures of the console's views."""
    if screenshots_taken:
        terminalreporter.write_line(
            f"console screenshots ({len(screenshots_taken)}): {SCREENSHOTS}"
        )
