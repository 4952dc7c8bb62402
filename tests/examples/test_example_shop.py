"""The shop example runs on memory, SQLite and PostgreSQL, and tells its story right."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventfold import connect
from examples.shop.app import ShopRun, run_shop
from examples.shop.events import OrderPlaced, shop_events

ROOT = Path(__file__).resolve().parents[2]


def run(url: str) -> tuple[ShopRun, list[str]]:
    said: list[str] = []
    return asyncio.run(run_shop(url, said.append)), said


def check_story(result: ShopRun, said: list[str]) -> None:
    alice, bob = result.orders
    assert (result.shipped_by, result.refused_clerk) == ("ann", "ben")
    assert [(r.stream_id, r.stream_version, r.event_type) for r in result.log] == [
        (alice, 1, "OrderPlaced"), (bob, 1, "OrderPlaced"), (alice, 2, "PaymentReceived"),
        (alice, 3, "OrderShipped"), (bob, 2, "PaymentReceived"),
    ]
    text = "\n".join(said)
    assert f"ben's append is refused: stream {alice!r} is at version 3, the append expected 2" \
        in text
    assert "ben reloads" in text and "ann shipped it already" in text
    assert "version 2 both times (same result: True)" in text
    assert "v3 OrderShipped by ann with DHL" in text


def test_the_story_on_memory() -> None:
    check_story(*run("memory://"))


def test_the_story_on_sqlite_twice_in_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    first, said = run(url)
    check_story(first, said)
    second, said = run(url)  # migrating again is a no-op; new orders get new numbers
    check_story(second, said)
    assert set(first.orders).isdisjoint(second.orders)

    async def stored() -> None:
        async with connect(url, shop_events()) as store:
            alice = [store.registry.decode(r) for r in await store.read_stream(first.orders[0])]
            assert [e.event_type for e in alice] == [
                "OrderPlaced", "PaymentReceived", "OrderShipped",
            ]
            assert isinstance(alice[0], OrderPlaced) and str(alice[0].total) == "26.20"
            assert len(await store.list_streams(category="Order")) == 4

    asyncio.run(stored())


@pytest.mark.postgres
def test_the_story_on_postgres(pg_url: str) -> None:
    check_story(*run(pg_url))


def test_python_dash_m_runs_it_on_the_default_sqlite_file(tmp_path: Path) -> None:
    """As the README says: ``python -m examples.shop`` writes eventfold.db where it runs."""
    env = {key: value for key, value in os.environ.items() if key != "EVENTFOLD_DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "examples.shop"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Shop on sqlite:///eventfold.db")
    assert "ben's append is refused" in done.stdout
    assert (tmp_path / "eventfold.db").exists()


def test_a_bad_database_is_one_error_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop", "--database", "postgresql://x:pw@127.0.0.1:1/x"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: event store at postgresql://x:***@127.0.0.1:1/x")
    assert done.stderr.count("\n") == 1 and "pw" not in done.stderr
