"""``eventfold run``: a process another process starts, reads, stops with a signal, or kills.

Each test reads the child's output line by line and waits on lines, never on time: the
projection of ``cli_app:echo_app`` prints ``applied EVENT_ID`` for each event it handles.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import IO

import pytest
from cli_app import ItemAdded
from cli_support import (
    APP,
    EXPECTED,
    Invoke,
    child_environment,
    one_error_line,
    read_model,
    status_of,
)

from eventfold import EventRegistry, connect, migrate
from eventfold.cli.execution import EXIT_ERROR, EXIT_NOT_MIGRATED, EXIT_USAGE

WAIT = 60.0
"""The longest a test waits for a line: a bound on failure, not a synchronising sleep."""

ECHO_APP = "cli_app:echo_app"


class RunProcess:
    """``eventfold run`` in a child process, its stdout and stderr read line by line."""

    def __init__(self, url: str, holder: str, *options: str, app: str = ECHO_APP) -> None:
        self.holder = holder
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from eventfold.cli import main; main()",
             "--database", url, "run", "--app", app, "--holder", holder, *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=child_environment(),
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = self._reader(self.process.stdout)
        self.stderr = self._reader(self.process.stderr)
        self.seen: list[str] = []

    @staticmethod
    def _reader(stream: IO[str]) -> queue.Queue[str]:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stream:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        return lines

    def expect(self, wanted: str, *, stream: str = "stdout", anywhere: bool = False) -> list[str]:
        """Lines up to and including the first that starts with ``wanted`` (or, with
        ``anywhere``, contains it)."""
        source = self.stdout if stream == "stdout" else self.stderr
        lines: list[str] = []
        while True:
            try:
                line = source.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"{self.holder} never printed {wanted!r} on {stream} "
                            f"(printed {self.seen + lines})")
            lines.append(line)
            if line.startswith(wanted) or (anywhere and wanted in line):
                self.seen.extend(lines)
                return lines

    def rest(self, source: queue.Queue[str]) -> list[str]:
        """What is left to read (after the process exited and its pipes closed)."""
        out = []
        while not source.empty():
            out.append(source.get_nowait())
        return out


@pytest.fixture
def runs() -> Iterator[list[RunProcess]]:
    """Children to kill (by pid) if a test leaves them running."""
    started: list[RunProcess] = []
    yield started
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(timeout=WAIT)


def start(runs: list[RunProcess], url: str, holder: str, *options: str) -> RunProcess:
    child = RunProcess(url, holder, *options)
    runs.append(child)
    first = child.expect(f"runner {holder} started")
    assert first == [f"runner {holder} started"]  # the very first line, always
    return child


def item_ids(url: str) -> list[str]:
    """The event ids of the ItemAdded events in the log, in log order."""

    async def read() -> list[str]:
        async with connect(url, EventRegistry([ItemAdded])) as store:
            return [str(r.event_id) for r in await store.read_all(event_types=["ItemAdded"])]

    return asyncio.run(read())


def applied(child: RunProcess, count: int) -> set[str]:
    """The next ``count`` event ids the child says it applied."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(child.expect("applied ")[-1].removeprefix("applied "))
    return ids


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_it_serves_the_app_then_stops_on_a_signal_with_exit_0(
    invoke: Invoke, seeded_url: str, runs: list[RunProcess], stop: signal.Signals
) -> None:
    child = start(runs, seeded_url, "runner-1")
    assert applied(child, 3) == set(item_ids(seeded_url))
    child.expect("cart_totals: running")

    # Events appended while it runs are applied live.
    async def append() -> None:
        async with connect(seeded_url, EventRegistry([ItemAdded])) as store:
            await store.append("Cart-2", [ItemAdded(sku="tea", price=Decimal("3"), quantity=3)])

    asyncio.run(append())
    assert applied(child, 1) == {item_ids(seeded_url)[-1]}

    child.process.send_signal(stop)
    child.expect(f"runner runner-1 stopping ({stop.name})")
    assert child.process.wait(timeout=WAIT) == 0
    tail = child.rest(child.stdout)
    assert tail[-1] == "runner runner-1 stopped"
    assert {"cart_totals: stopped", "welcome: stopped"} <= set(tail)
    assert "Traceback" not in "\n".join(child.rest(child.stderr))

    # Graceful: the batches in progress committed, and the leases are released at once.
    assert read_model(seeded_url) == {**EXPECTED, "Cart-2": (3, Decimal("9.00"))}
    status = status_of(invoke, seeded_url)
    assert status["cart_totals"]["events_behind"] == 0
    assert status["cart_totals"]["state"] == "stopped"  # lease released, not left to expire
    assert status["welcome"]["events_behind"] == 0


def test_a_second_runner_takes_over_when_the_first_is_killed(
    invoke: Invoke, seeded_url: str, runs: list[RunProcess]
) -> None:
    first = start(runs, seeded_url, "runner-a", "--lease-ttl", "1")
    applied(first, 3)
    first.expect("cart_totals: running")
    second = start(runs, seeded_url, "runner-b", "--lease-ttl", "1")
    second.expect("cart_totals: waiting: held by another runner")
    holder = status_of(invoke, seeded_url)["cart_totals"]["holder"]
    assert holder == "runner-a"

    first.process.kill()  # kill -9: no chance to release anything
    first.process.wait(timeout=WAIT)
    second.expect("cart_totals: running")  # within the lease's TTL plus a retry
    assert status_of(invoke, seeded_url)["cart_totals"]["holder"] == "runner-b"

    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(timeout=WAIT) == 0
    assert read_model(seeded_url) == EXPECTED  # nothing applied twice


def test_metrics_and_the_snapshot_sweep(seeded_url: str, runs: list[RunProcess]) -> None:
    child = start(runs, seeded_url, "runner-m", "--metrics-port", "0",
                  "--snapshot-sweep-every", "1", "--snapshot-threshold", "1",
                  "--log-level", "info")
    port = int(child.expect("metrics on port ")[-1].removeprefix("metrics on port "))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as reply:
        assert reply.status == 200
    # The sweep logs at INFO what it did; both carts reach the threshold of one event.
    line = child.expect("snapshot sweep examined", stream="stderr", anywhere=True)[-1]
    assert "snapshot sweep examined 2 streams, took 2 snapshots, 0 failed" in line
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(timeout=WAIT) == 0


def test_a_metrics_port_in_use_is_one_line(invoke: Invoke, seeded_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("--database", seeded_url, "run", "--app", APP, "--metrics-port",
                        str(port))
    assert result.exit_code == EXIT_ERROR
    assert f"cannot serve metrics on port {port}" in one_error_line(result)


def test_without_an_app_it_is_one_line(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "run")
    assert result.exit_code == EXIT_USAGE
    assert "`eventfold run` needs the application" in one_error_line(result)


def test_an_unmigrated_store_is_one_line(invoke: Invoke, sqlite_url: str) -> None:
    result = invoke("--database", sqlite_url, "run", "--app", APP)
    assert result.exit_code == EXIT_NOT_MIGRATED
    assert "run `eventfold migrate" in one_error_line(result)


def test_the_app_runs_its_process_managers_deadlines(sqlite_url: str) -> None:
    """``Running.deadline_poller()``: what ``run`` starts beside the runner."""
    from eventfold.app import load_app
    from eventfold.processes import DeadlinePoller

    async def check() -> None:
        await migrate(sqlite_url)
        async with load_app(APP).connect(sqlite_url) as running:
            poller = running.deadline_poller(interval=5)
            assert isinstance(poller, DeadlinePoller)
            assert list(poller.managers) == ["welcome"]
        async with load_app("cli_app:changed_app").connect(sqlite_url) as running:
            assert running.deadline_poller() is None

    asyncio.run(check())
