"""The README's commands on the shop: ``eventfold --app examples.shop:app ...`` run from
the repository's root, as the console script (no PYTHONPATH), on a day's SQLite file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from examples.shop.story import run_shop

ROOT = Path(__file__).resolve().parents[2]
EVENTFOLD = str(Path(sys.executable).with_name("eventfold"))


@pytest.fixture
async def shop_db(tmp_path: Path) -> str:
    """A SQLite file after one day of the shop."""
    url = f"sqlite:///{tmp_path / 'eventfold.db'}"
    await run_shop(url, say=lambda _: None)
    return url


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EVENTFOLD_APP")}
    env["EVENTFOLD_DATABASE_URL"] = url
    return env


def eventfold(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EVENTFOLD, "--app", "examples.shop:app", *args], cwd=ROOT, env=environment(url),
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_rebuild_status_and_catalog(shop_db: str) -> None:
    done = eventfold(shop_db, "projections", "rebuild", "order_list")
    assert done.returncode == 0, done.stderr
    assert "rebuilt order_list (blue/green, swapped in): 10 events" in done.stdout

    done = eventfold(shop_db, "projections", "status", "--json")
    assert done.returncode == 0, done.stderr
    status = {p["name"]: p for p in json.loads(done.stdout)["projections"]}
    assert list(status) == ["order_list", "customer_totals", "customer_directory", "fulfilment"]
    assert all(p["events_behind"] == 0 and p["parked"] == 0 for p in status.values())

    done = eventfold(shop_db, "catalog")
    assert done.returncode == 0, done.stderr
    assert "| [OrderPlaced](#orderplaced) | 2 | 1 |" in done.stdout


def test_eventfold_run_serves_the_shop_until_sigint(shop_db: str) -> None:
    runner = subprocess.Popen(
        [EVENTFOLD, "--app", "examples.shop:app", "run"], cwd=ROOT, env=environment(shop_db),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert runner.stdout is not None
        seen = []
        for line in runner.stdout:  # the runner says when each subscriber is served
            seen.append(line.strip())
            if set(seen) >= {"order_list: running", "customer_totals: running",
                             "fulfilment: running"}:
                break
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, err
    assert out.rstrip().splitlines()[-1].endswith("stopped")
