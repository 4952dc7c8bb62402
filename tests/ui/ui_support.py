"""Helpers of the console's tests: the shop's database with a parked event, a console
client in this process, and the real ``eventfold ui`` in a child process."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
from playwright.sync_api import Page
from ui_app import POISON_ENV, app

from eventfold import migrate
from eventfold.config import Settings
from eventfold.eventstore.causation import correlated
from eventfold.ui import create_console, open_sources
from examples.shop.events import OrderLine
from examples.shop.order import Order
from examples.shop.story import PRICES, run_shop, settle

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
APP = "ui_app:app"
"""The ``--app`` of the console's tests (tests/ui/ui_app.py)."""
POISONED = "mallory"
"""The customer the audit refuses while the poison file names her."""
POISON_ORDER = "poison-1"
SCREENSHOTS = ROOT / "build" / "ui-screenshots"
"""Where the browser tests keep a picture of each view (printed at the end of the run)."""
screenshots_taken: list[Path] = []
STARTUP_SECONDS = 60.0
"""How long a child ``eventfold`` may take to say it serves (a shared, busy machine)."""


async def fill_shop(url: str) -> None:
    """One day of the example shop at ``url``, then an order of ``POISONED`` that the audit
    parks (the poison file must name her)."""
    await migrate(url)
    await run_shop(url, say=lambda line: None)
    async with app.connect(url) as running:
        with correlated(f"checkout-{POISON_ORDER}"):
            await running.repository.create(Order, POISON_ORDER, partial(
                Order.place, customer=POISONED,
                lines=[OrderLine(sku="pen", quantity=1, unit_price=PRICES["pen"])],
            ))
        runner = running.runner()
        async with runner:
            await settle(running.store, runner)


def copy_database(source: Path, target: Path) -> None:
    """Copy a closed SQLite database (and any write-ahead log it kept)."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


@asynccontextmanager
async def console_client(
    url: str, *, app_spec: str | None = APP, token: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a console on ``url``, served in this process and event loop."""
    async with open_sources(Settings(database_url=url, app_spec=app_spec)) as sources:
        transport = httpx.ASGITransport(app=create_console(sources, token=token))
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            yield client


@dataclass
class ConsoleProcess:
    """A running ``eventfold ui`` child process, and what it printed at start."""

    url: str
    token: str | None
    process: subprocess.Popen[str]


def child_environment(poison_file: Path) -> dict[str, str]:
    """The environment of a child ``eventfold ui``: it imports ``ui_app`` and ``examples``."""
    paths = [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "PYTHONUNBUFFERED": "1", POISON_ENV: str(poison_file)}
    for name in ("EVENTFOLD_DATABASE_URL", "EVENTFOLD_APP"):
        env.pop(name, None)
    return env


@contextmanager
def console_process(
    url: str, poison_file: Path, *, allow_actions: bool = True
) -> Iterator[ConsoleProcess]:
    """``eventfold --database URL --app ui_app:app ui --port 0 [--allow-actions]`` in a
    child process, until the block ends; then stopped with SIGINT, which must exit 0."""
    with _child(
        url, poison_file, "ui", "--port", "0", *(["--allow-actions"] if allow_actions else [])
    ) as (process, lines):
        first = _line(lines, process)
        assert first.startswith("console on http://127.0.0.1:"), first
        token = None
        if allow_actions:
            second = _line(lines, process)
            assert second.startswith("action token: "), second
            token = second.removeprefix("action token: ")
        yield ConsoleProcess(first.split()[2], token, process)


@contextmanager
def runner_process(url: str, poison_file: Path) -> Iterator[str]:
    """``eventfold run`` of the tests' application in a child process, serving until the
    block ends (then SIGINT, exit 0); yields the runner's holder name."""
    with _child(url, poison_file, "run", "--lease-ttl", "30") as (process, lines):
        line = _line(lines, process)
        while not line.startswith("runner "):
            line = _line(lines, process)
        assert line.endswith(" started"), line
        yield line.split()[1]


@contextmanager
def _child(
    url: str, poison_file: Path, *arguments: str
) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str | None]]]:
    """``eventfold --database URL --app ui_app:app ARGUMENTS...`` and its stdout's lines."""
    command = [
        sys.executable, "-c", "from eventfold.cli import main; main()", "--database", url,
        "--app", APP, *arguments,
    ]
    process = subprocess.Popen(
        command, cwd=ROOT, env=child_environment(poison_file), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.stderr is not None
        errors = process.stderr.read()
        assert code == 0, f"eventfold {arguments[0]} exited {code} on SIGINT: {errors}"


def _line(lines: queue.Queue[str | None], process: subprocess.Popen[str]) -> str:
    try:
        line = lines.get(timeout=STARTUP_SECONDS)
    except queue.Empty:
        raise AssertionError(f"eventfold said nothing within {STARTUP_SECONDS} s") from None
    if line is None:
        assert process.stderr is not None
        raise AssertionError(f"eventfold ended: {process.wait()} {process.stderr.read()}")
    return line


def cure(poison_file: Path) -> None:
    """Fix the audit's "bug": it refuses nobody from now on."""
    poison_file.unlink()


def snap(page: Page, name: str) -> None:
    """Keep a picture of the page as it is now, in ``SCREENSHOTS``."""
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    screenshots_taken.append(path)
