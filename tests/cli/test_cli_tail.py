"""``eventfold events tail``: the global log so far, then new events live, until stopped."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import IO

import pytest
from cli_support import (
    REGISTRY_EVENTS,
    CartOpened,
    Invoke,
    ItemAdded,
    append_cart_events,
    json_lines,
)

from eventfold import EventRegistry, connect, migrate

WAIT = 60.0
"""The longest a test waits for a line: a bound on failure, not a synchronising sleep."""


def test_from_start_prints_the_log_in_order(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "events", "tail", "--from-start", "--count", "5",
                    "--json")
    assert result.exit_code == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [(r["stream_id"], r["stream_version"]) for r in rows] == [
        ("Cart-1", 1), ("Cart-1", 2), ("Cart-1", 3), ("Cart-2", 1), ("Wishlist-9", 1),
    ]
    assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)


def test_the_readable_form_has_one_line_per_event(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "events", "tail", "--from-start", "--count", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "Cart-1@1 CartOpened v1" in lines[0] and "Cart-1@2 ItemAdded v1" in lines[1]


class Tail:
    """``eventfold events tail`` in a child process, its output read line by line."""

    def __init__(self, url: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from eventfold.cli import main; main()",
             "--database", url, "events", "tail", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = self._reader(self.process.stdout)
        self.stderr = self._reader(self.process.stderr)

    @staticmethod
    def _reader(stream: IO[str]) -> queue.Queue[str]:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            for line in stream:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        return lines

    def next_event(self) -> dict[str, object]:
        """The next envelope printed, waiting for it to arrive."""
        row = json.loads(self.stdout.get(timeout=WAIT))
        assert isinstance(row, dict)
        return row

    def wait_until_following(self) -> str:
        """Block until the tail says it follows: every later commit will be printed."""
        line = self.stderr.get(timeout=WAIT)
        assert line.startswith("following "), line
        return line

    def remaining_stderr(self) -> str:
        out = []
        while not self.stderr.empty():
            out.append(self.stderr.get_nowait())
        return "".join(out)


@pytest.fixture
def tail_process() -> Iterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        if tail.process.poll() is None:
            tail.process.kill()
        tail.process.wait(timeout=WAIT)


async def _append_to(url: str, stream_id: str, *events: CartOpened | ItemAdded) -> None:
    async with connect(url, EventRegistry(REGISTRY_EVENTS)) as store:
        await store.append(stream_id, list(events))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_url(request: pytest.FixtureRequest) -> str:
    """A store holding the five cart events: a SQLite file (polled), or PostgreSQL (LISTEN)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("seeded_url")
        return url
    url = request.getfixturevalue("empty_pg_url")
    asyncio.run(migrate(url))
    append_cart_events(url)
    return url


def test_it_follows_new_events_live_and_ctrl_c_stops_it_cleanly(
    live_url: str, tail_process: list[Tail]
) -> None:
    tail = Tail(live_url, "--json")
    tail_process.append(tail)
    assert "after position 5" in tail.wait_until_following()  # starts at the head

    asyncio.run(_append_to(live_url, "Cart-3", CartOpened(owner="cy")))
    first = tail.next_event()
    assert (first["stream_id"], first["event_type"], first["data"]) == (
        "Cart-3", "CartOpened", {"owner": "cy"},
    )
    asyncio.run(_append_to(live_url, "Cart-3", ItemAdded(sku="jam", price=Decimal("2.50"))))
    second = tail.next_event()
    assert (second["stream_id"], second["stream_version"]) == ("Cart-3", 2)
    assert second["data"] == {"sku": "jam", "price": "2.50"}

    tail.process.send_signal(signal.SIGINT)
    assert tail.process.wait(timeout=WAIT) == 0
    assert "Traceback" not in tail.remaining_stderr()


def test_count_stops_after_that_many_live_events(
    seeded_url: str, tail_process: list[Tail]
) -> None:
    tail = Tail(seeded_url, "--json", "--count", "2")
    tail_process.append(tail)
    tail.wait_until_following()
    asyncio.run(_append_to(seeded_url, "Cart-4", CartOpened(owner="di"),
                           ItemAdded(sku="mug", price=Decimal("5"))))
    assert [tail.next_event()["stream_version"] for _ in range(2)] == [1, 2]
    assert tail.process.wait(timeout=WAIT) == 0
