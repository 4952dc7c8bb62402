"""Several ``eventfold run`` processes share a partitioned process manager over real
PostgreSQL: some are killed with kill -9 and restarted, others join while events flow.
Every instance sees each of its steps exactly once and in order, although they come from
streams shared by many instances, and every timeout fires exactly once (its command too),
fired by whichever runner holds the instance's partition at the time."""

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
from process_child import PARTITIONS_ENV, Opened, Touched, app
from test_multiprocess import REPO, Runners, eventually

from eventfold.eventstore import EventStore, connect

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ORDERS = 150
STEPS = 3
SHELVES = 7


@pytest.fixture
async def url(pg_clean_url: str) -> str:
    """The test database, emptied."""
    return pg_clean_url


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
    """``eventfold run --app process_child:app`` processes, killed at the end."""
    started = Runners(url, tmp_path, app="process_child:app")
    try:
        yield started
    finally:
        await started.close()


async def _write(store: EventStore) -> None:
    """Open the orders, then their steps on shared shelf streams, interleaved."""
    for n in range(ORDERS):
        await store.append(f"Order-o{n}", [Opened(order=f"o{n}")])
        if n >= 2:  # the steps of an order opened a moment ago
            for step in range(1, STEPS + 1):
                order = n - 2
                shelf = f"Shelf-{(order + step) % SHELVES}"
                await store.append(shelf, [Touched(order=f"o{order}", n=step)])
        await asyncio.sleep(0.04)  # a steady writer, not a burst: the kills land mid-flow
    for order in (ORDERS - 2, ORDERS - 1):
        for step in range(1, STEPS + 1):
            await store.append(
                f"Shelf-{(order + step) % SHELVES}", [Touched(order=f"o{order}", n=step)]
            )


async def _instances(db: asyncpg.Connection) -> dict[str, dict[str, object]]:
    rows = await db.fetch(
        "SELECT key, state FROM eventfold_process_states WHERE manager = 'mp_orders'"
    )
    return {row["key"]: json.loads(row["state"])["data"] for row in rows}


async def test_killed_restarted_and_added_runners_step_and_fire_every_instance_once(
    runners: Runners,
    db: asyncpg.Connection,
    store: EventStore,
) -> None:
    await runners.start("a", cli=True)
    await runners.start("b", cli=True)
    writer = asyncio.create_task(_write(store))

    async def fired_at_least(count: int) -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM eventfold_deadlines WHERE status = 'fired'")
            >= count
        )

    await eventually(lambda: fired_at_least(15), within=60, what="15 fired", runners=runners)
    await runners.kill(runners.by_holder("a"))
    await runners.start("c", cli=True)
    await eventually(lambda: fired_at_least(60), within=60, what="60 fired", runners=runners)
    await runners.start("a2", cli=True)  # the killed one, back
    await runners.kill(runners.by_holder("b"))
    await runners.start("d", cli=True)
    await writer

    async def all_done() -> bool:
        instances = await _instances(db)
        return len(instances) == ORDERS and all(
            len(state["steps"]) == STEPS and state["fired"]
            for state in instances.values()  # type: ignore[arg-type]
        )

    await eventually(all_done, within=120, what="every step and timeout", runners=runners)
    instances = await _instances(db)
    wrong = {
        key: state
        for key, state in instances.items()
        if state["steps"] != list(range(1, STEPS + 1)) or state["fired"] != 1
    }
    assert not wrong, f"{len(wrong)} instances stepped or fired other than once: {wrong}"
    deadlines = await db.fetch(
        "SELECT status, attempts, count(*) AS n FROM eventfold_deadlines GROUP BY 1, 2"
    )
    assert [(r["status"], r["attempts"], r["n"]) for r in deadlines] == [("fired", 1, ORDERS)]
    rang = await db.fetch(
        "SELECT stream_id, count(*) AS n FROM eventfold_events WHERE event_type = 'Rang' "
        "GROUP BY stream_id"
    )
    assert len(rang) == ORDERS and {r["n"] for r in rang} == {1}
    assert await db.fetchval("SELECT count(*) FROM eventfold_parked_events") == 0
    assert not writer.cancelled()

    # The live runners (c, a2, d) share the four partitions: 2, 1 and 1.
    async def fair() -> bool:
        holders = Counter(
            row["holder"]
            for row in await db.fetch(
                "SELECT holder FROM eventfold_leases WHERE name LIKE 'mp\\_orders/%' "
                "AND partition >= 0 AND expires_at > extract(epoch from clock_timestamp())"
            )
        )
        return set(holders) == {"c", "a2", "d"} and sorted(holders.values()) == [1, 1, 2]

    await eventually(fair, within=30, what="the partitions shared fairly", runners=runners)


async def test_status_lists_the_partitions_and_repartition_changes_the_count(
    runners: Runners,
    db: asyncpg.Connection,
    store: EventStore,
    url: str,
) -> None:
    await runners.start("a", cli=True)
    for n in range(12):
        await store.append(f"Order-o{n}", [Opened(order=f"o{n}")])

    async def all_fired() -> bool:
        return bool(
            await db.fetchval("SELECT count(*) FROM eventfold_deadlines WHERE status = 'fired'")
            == 12
        )

    await eventually(all_fired, within=60, what="12 fired", runners=runners)
    code, out, err = await _eventfold(url, "4", "projections", "status", "--json")
    assert code == 0, err
    [entry] = json.loads(out)["projections"]
    assert entry["name"] == "mp_orders" and entry["holder"] == "a"
    assert [p["name"] for p in entry["partitions"]] == [f"mp_orders/{i}" for i in range(4)]

    code, out, err = await _eventfold(url, "2", "projections", "repartition", "mp_orders")
    assert code == 7, (out, err)  # held by a runner: a conflict
    assert err.strip().endswith(
        "'mp_orders' is held by a: wait for it to finish or stop that process (a dead "
        "holder's lease expires within seconds)"
    )
    await runners.terminate(runners.by_holder("a"))
    assert await runners.exited(runners.by_holder("a")) == 0
    code, out, err = await _eventfold(url, "2", "run", "--holder", "z")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "run `eventfold projections repartition mp_orders` to change the count" in err
    code, out, err = await _eventfold(url, "2", "projections", "repartition", "mp_orders")
    assert code == 0, err
    assert out.startswith("repartitioned mp_orders into 2 partition(s), going on after ")
    await store.append("Order-o99", [Opened(order="o99")])
    await runners.start("b", cli=True, env={PARTITIONS_ENV: "2"})
    await eventually(
        lambda: _fired(db, "o99"),
        within=60,
        what="o99's timeout, in two partitions",
        runners=runners,
    )
    code, out, err = await _eventfold(url, "2", "projections", "status", "--json")
    [entry] = json.loads(out)["projections"]
    assert [p["name"] for p in entry["partitions"]] == ["mp_orders/0", "mp_orders/1"]


async def _fired(db: asyncpg.Connection, key: str) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM eventfold_deadlines WHERE key = $1 AND status = 'fired'", key
        )
    )


async def _eventfold(url: str, partitions: str, *arguments: str) -> tuple[int, str, str]:
    """Run ``eventfold`` on ``process_child:app`` declaring that many partitions."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from eventfold.cli import main; main()",
        "--database",
        url,
        "--app",
        "process_child:app",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={
            **os.environ,
            PARTITIONS_ENV: partitions,
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
