"""Several ``eventfold run`` processes share a partitioned projection over real PostgreSQL:
some are killed with kill -9 and restarted, others join while events flow; every event is
applied exactly once, each stream in order, and the partitions end up spread fairly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from partition_child import PARTITIONS_ENV, Counted, app
from test_multiprocess import REPO, Runners, eventually

from eventfold.eventstore import EventStore, connect
from eventfold.eventstore.records import START, GlobalPosition

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STREAMS = 40


@pytest.fixture
async def url(pg_clean_url: str) -> AsyncIterator[str]:
    """The test database, emptied, without ``mp_split`` (dropped before and after)."""
    await _drop(pg_clean_url)
    yield pg_clean_url
    await _drop(pg_clean_url)


async def _drop(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS mp_split")
    finally:
        await conn.close()


@pytest.fixture
async def db(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection the test looks at the database through."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    """The writer's store."""
    opened = await connect(url, app.registry)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def runners(url: str, tmp_path: Path) -> AsyncIterator[Runners]:
    """``eventfold run --app partition_child:app`` processes, killed at the end."""
    started = Runners(url, tmp_path, app="partition_child:app")
    try:
        yield started
    finally:
        await started.close()


async def _write(store: EventStore, first: int, count: int) -> GlobalPosition:
    last = START
    for seq in range(first, first + count):
        result = await store.append(f"Order-{seq % STREAMS}", [Counted(seq=seq)])
        last = result.global_position
        await asyncio.sleep(0)  # let the test's other tasks run between appends
    return last


async def _shares(db: asyncpg.Connection) -> Counter[str]:
    rows = await db.fetch(
        "SELECT holder FROM eventfold_leases WHERE name LIKE 'mp\\_split/%' AND partition >= 0 "
        "AND expires_at > extract(epoch from clock_timestamp())"
    )
    return Counter(row["holder"] for row in rows)


async def test_runners_killed_restarted_and_added_apply_every_event_once_in_order(
    runners: Runners, db: asyncpg.Connection, store: EventStore,
) -> None:
    await runners.start("a", cli=True)
    await runners.start("b", cli=True)
    writer = asyncio.create_task(_write(store, 1, 1500))

    async def applied_at_least(n: int) -> bool:
        if await db.fetchval("SELECT to_regclass('mp_split')") is None:
            return False
        return bool(await db.fetchval("SELECT count(*) FROM mp_split") >= n)

    await eventually(lambda: applied_at_least(200), within=60, what="200 applied", runners=runners)
    await runners.kill(runners.by_holder("a"))
    await runners.start("c", cli=True)
    await eventually(lambda: applied_at_least(600), within=60, what="600 applied", runners=runners)
    await runners.start("a2", cli=True)  # the killed one, back
    await runners.kill(runners.by_holder("b"))
    await runners.start("d", cli=True)
    await runners.start("e", cli=True)
    last = await writer

    async def all_applied() -> bool:
        return await store.head() >= last and await applied_at_least(1500)

    await eventually(all_applied, within=90, what="every event applied", runners=runners)
    rows = await db.fetch("SELECT event_id, stream_id, version FROM mp_split ORDER BY id")
    twice = [e for e, n in Counter(row["event_id"] for row in rows).items() if n > 1]
    assert not twice, f"{len(twice)} events applied twice"
    assert len(rows) == 1500
    by_stream: dict[str, list[int]] = {}
    for row in rows:
        by_stream.setdefault(row["stream_id"], []).append(row["version"])
    assert all(versions == sorted(versions) for versions in by_stream.values())
    assert await db.fetchval("SELECT count(*) FROM eventfold_parked_events") == 0

    # Four live runners (c, a2, d, e), four partitions: one each, within a few lease periods.
    async def fair() -> bool:
        return sorted((await _shares(db)).values()) == [1, 1, 1, 1]

    await eventually(fair, within=30, what="one partition per runner", runners=runners)


async def test_another_partition_count_is_refused_then_rebuilt_and_status_shows_partitions(
    runners: Runners, store: EventStore, url: str,
) -> None:
    await runners.start("a", cli=True)
    await _write(store, 1, 20)

    async def stored() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM eventfold_checkpoints WHERE partitions = 4"
            ) == 4)
        finally:
            await conn.close()

    await eventually(stored, within=30, what="the partitions' checkpoints", runners=runners)
    code, out, err = await _eventfold(url, "2", "run", "--holder", "z")
    lines = err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1, lines
    assert "'mp_split' declares 2 partition(s) but its checkpoints are stored with 4" in lines[0]
    assert "eventfold projections rebuild mp_split" in lines[0]

    code, out, err = await _eventfold(url, "4", "projections", "status", "--json")
    assert code == 0, err
    [entry] = json.loads(out)["projections"]
    assert [p["name"] for p in entry["partitions"]] == [f"mp_split/{i}" for i in range(4)]
    assert {p["holder"] for p in entry["partitions"]} == {"a"}
    assert entry["events_behind"] == 0 and entry["holder"] == "a"

    await runners.terminate(runners.by_holder("a"))
    assert await runners.exited(runners.by_holder("a")) == 0
    code, out, err = await _eventfold(url, "2", "projections", "rebuild", "mp_split")
    assert code == 0, err
    assert out.startswith("rebuilt mp_split (blue/green, swapped in): 20 events in ")
    code, out, err = await _eventfold(url, "2", "projections", "status", "--json")
    [entry] = json.loads(out)["projections"]
    assert [p["name"] for p in entry["partitions"]] == ["mp_split/0", "mp_split/1"]
    assert entry["state"] == "stopped" and entry["events_behind"] == 0


async def _eventfold(url: str, partitions: str, *arguments: str) -> tuple[int, str, str]:
    """Run ``eventfold`` on ``partition_child:app`` declaring that many partitions."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from eventfold.cli import main; main()", "--database", url,
        "--app", "partition_child:app", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        env={
            **os.environ, PARTITIONS_ENV: partitions,
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), str(REPO)]),
        },
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
