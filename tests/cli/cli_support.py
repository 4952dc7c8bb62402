"""Helpers of the command-line tests: test events, seeding a store, reading the output."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from typer.testing import Result

from eventfold import NO_STREAM, Event, EventRegistry, EventStore, RecordedEvent, connect
from eventfold.eventstore import GlobalPosition
from eventfold.eventstore.engine import create_engine


class CartOpened(Event):
    """A test event."""

    owner: str


class ItemAdded(Event):
    """A test event with a decimal, so JSON output keeps it exact."""

    sku: str
    price: Decimal


REGISTRY_EVENTS = (CartOpened, ItemAdded)

Invoke = Callable[..., Result]

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""


def append_cart_events(url: str) -> list[RecordedEvent]:
    """Store two carts' events at ``url`` (already migrated) and return the global log."""

    async def seed() -> list[RecordedEvent]:
        async with connect(url, EventRegistry(REGISTRY_EVENTS)) as store:
            await store.append("Cart-1", [CartOpened(owner="ann")], expected_version=NO_STREAM)
            await store.append(
                "Cart-1", [ItemAdded(sku="tea", price=Decimal("3.10")),
                           ItemAdded(sku="cup", price=Decimal("7.00"))], expected_version=1,
            )
            await store.append("Cart-2", [CartOpened(owner="ben")], expected_version=NO_STREAM)
            last = await store.append("Wishlist-9", [ItemAdded(sku="pot", price=Decimal("19.99"))])
            await visible(store, last.global_position)
            return await store.read_all()

    return asyncio.run(seed())


async def visible(store: EventStore, position: GlobalPosition) -> None:
    """Wait until the global log shows ``position``.

    On PostgreSQL the log shows an event only once every older write transaction of the
    whole cluster has ended, and other test runs share the cluster: a command run right
    after an append could otherwise see a log without it.
    """
    async with asyncio.timeout(60):
        while (head := await store.head()) < position:
            await store.wait_for_events(head, timeout=1.0)


def json_lines(text: str) -> Sequence[dict[str, Any]]:
    """Parse JSON Lines output, failing on any line that is not a JSON object."""
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(row, dict) for row in rows)
    return rows


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line a failed command printed; asserts nothing else."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]


APP = "cli_app:app"
"""The ``--app`` of the command-line tests' application (tests/cli/cli_app.py)."""

HERE = Path(__file__).resolve().parent


def child_environment(**extra: str) -> dict[str, str]:
    """The environment of an ``eventfold`` child process that can import ``cli_app``."""
    paths = [str(HERE), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "PYTHONUNBUFFERED": "1", **extra}
    for name in ("EVENTFOLD_DATABASE_URL", "EVENTFOLD_APP", "EVENTFOLD_READ_MODELS_URL"):
        if name not in extra:
            env.pop(name, None)
    return env


EXPECTED = {"Cart-1": (2, Decimal("10.10")), "Wishlist-9": (1, Decimal("19.99"))}
"""The read model of the seeded log (v1 items count one each, through the upcaster)."""


def read_model(url: str) -> dict[str, tuple[int, Decimal]]:
    """The rows of ``cli_cart_totals``: stream -> (quantity, total)."""

    async def read() -> dict[str, tuple[int, Decimal]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(sa.text(
                    "SELECT stream_id, quantity, total FROM cli_cart_totals ORDER BY stream_id"
                ))
                return {stream: (quantity, Decimal(total).quantize(Decimal("0.01")))
                        for stream, quantity, total in rows}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def status_of(invoke: Invoke, url: str) -> dict[str, dict[str, Any]]:
    """``projections status --json``, by subscriber name."""
    result = invoke("-d", url, "-a", APP, "projections", "status", "--json")
    assert result.exit_code == 0, result.stderr
    [report] = json_lines(result.stdout)
    return {entry["name"]: entry for entry in report["projections"]}


def shell_environment() -> dict[str, str]:
    """A user's shell: this interpreter's ``eventfold`` and ``python`` first on the PATH,
    the repository's root importable (for ``examples.shop:app``), no eventfold variables."""
    scripts = str(Path(sys.executable).parent)
    environment = {
        **os.environ, "PATH": f"{scripts}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
    }
    environment.pop("EVENTFOLD_DATABASE_URL", None)
    environment.pop("EVENTFOLD_APP", None)
    environment.pop("EVENTFOLD_READ_MODELS_URL", None)
    return environment


def shell(command: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a user types it in bash (``shell_environment``)."""
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=shell_environment(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def hinted_commands(message: str) -> list[str]:
    """The commands an error message tells the user to run (its backticked spans that start
    with a program name)."""
    return [span for span in re.findall(r"`([^`]+)`", message)
            if span.split()[0] in {"eventfold", "createdb", "mkdir"}]
