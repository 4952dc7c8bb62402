"""Several runner processes against one PostgreSQL: one holder per projection, failover after
kill -9, every event applied exactly once, no half-committed batch.

The runners are real processes (``runner_child``), killed with real signals. The read models
of ``runner_child.app`` record one row per application with no unique key, so an event
applied twice is seen as two rows, and each batch's row names the process that committed it.
Nothing here sleeps to synchronise: the tests poll the database against a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from runner_child import (
    READY,
    STALL_ENV,
    STOPPED,
    STOPPING,
    Audit,
    Ledger,
    Tally,
    Ticked,
    Tocked,
    app,
)

from eventfold.eventstore import EventStore, connect
from eventfold.eventstore.records import START, GlobalPosition, RecordedEvent

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

T = TypeVar("T")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

LEASE_TTL = 1.0
"""The children's lease time to live: a dead holder is replaced after about this long."""

FAILOVER_LIMIT = 10.0
"""What the tests accept from kill -9 to the next holder's first committed batch."""

POLL = 0.02
"""How often the tests look at the database while they wait for a state."""

NAMES = (Ledger.name, Audit.name, Tally.name)

failovers: list[float] = []
"""The failover times measured in this session (printed by the tests that measure them)."""


# -- runner processes ------------------------------------------------------------------------


@dataclass
class Child:
    """One runner process: ``python -m runner_child`` or ``eventfold run``."""

    holder: str
    process: asyncio.subprocess.Process
    log: Path
    cli: bool

    @property
    def pid(self) -> int:
        """The process id (what its read-model rows carry)."""
        return self.process.pid

    @property
    def alive(self) -> bool:
        """Whether it has not exited yet."""
        return self.process.returncode is None

    @property
    def ready_line(self) -> str:
        """What it prints once it serves."""
        return f"runner {self.holder} started" if self.cli else READY

    @property
    def stopping_line(self) -> str:
        """What it prints when it takes SIGTERM."""
        return f"runner {self.holder} stopping" if self.cli else STOPPING

    @property
    def stopped_line(self) -> str:
        """What it prints when it stopped (before exit code 0)."""
        return f"runner {self.holder} stopped" if self.cli else STOPPED


class Runners:
    """Starts runner processes of ``runner_child.app`` (or ``app``, for ``eventfold run``)
    and kills the ones left at the end."""

    def __init__(self, url: str, directory: Path, app: str = "runner_child:app") -> None:
        self.url = url
        self.directory = directory
        self.app = app
        self.children: list[Child] = []

    async def start(
        self, holder: str, *, env: dict[str, str] | None = None, cli: bool = False,
        batch_size: int = 25,
    ) -> Child:
        """Start a runner process and wait until it serves: ``eventfold run --app
        runner_child:app`` with ``cli``, else ``python -m runner_child``. Small batches
        (many commits) by default, so a kill lands mid-stream."""
        log = self.directory / f"{holder}.log"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(HERE), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            **(env or {}),
        }
        options = [
            "--holder", holder, "--lease-ttl", str(LEASE_TTL), "--batch-size", str(batch_size),
        ]
        if cli:
            command = [
                "-c", "from eventfold.cli import main; main()", "--database", self.url,
                "run", "--app", self.app, *options,
            ]
        else:
            command = ["-m", "runner_child", self.url, *options]
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, *command,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=REPO, env=environment,
            )
        child = Child(holder, process, log, cli)
        self.children.append(child)
        await self.expect(child, child.ready_line, within=30)
        return child

    async def expect(self, child: Child, start: str, within: float = 15.0) -> list[str]:
        """Read the child's output until a line starting with ``start``; return the lines."""
        assert child.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + within
        while not lines or not lines[-1].startswith(start):
            try:
                raw = await asyncio.wait_for(
                    child.process.stdout.readline(), max(deadline - time.monotonic(), 0)
                )
            except TimeoutError:
                raw = b""
            if not raw:
                pytest.fail(
                    f"{child.holder} never printed {start!r} (printed {lines})\n{self.logs()}"
                )
            lines.append(raw.decode().rstrip("\n"))
        return lines

    def by_holder(self, holder: str) -> Child:
        """The child that took leases under this holder name."""
        return next(child for child in self.children if child.holder == holder)

    async def kill(self, child: Child) -> float:
        """kill -9 the child; return the monotonic time of the kill."""
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
        await child.process.wait()
        return killed_at

    async def terminate(self, child: Child) -> None:
        """SIGTERM the child and wait until it says it is stopping."""
        os.kill(child.pid, signal.SIGTERM)
        await self.expect(child, child.stopping_line)

    async def exited(self, child: Child, within: float = 15.0) -> int:
        """Wait until the child says it stopped and exits; return its exit code."""
        await self.expect(child, child.stopped_line, within)
        try:
            return await asyncio.wait_for(child.process.wait(), within)
        except TimeoutError:
            pytest.fail(f"{child.holder} did not exit within {within}s\n{self.logs()}")

    def logs(self) -> str:
        """The tail of every child's stderr, for failure messages."""
        parts = []
        for child in self.children:
            text = child.log.read_text(errors="replace") if child.log.exists() else ""
            parts.append(f"--- {child.holder} (pid {child.pid}) ---\n{text[-3000:]}")
        return "\n".join(parts)

    async def close(self) -> None:
        """Kill (by pid) the children still running."""
        for child in self.children:
            if child.alive:
                os.kill(child.pid, signal.SIGKILL)
                await child.process.wait()


# -- fixtures ---------------------------------------------------------------------------------


async def drop_read_models(url: str) -> None:
    """Drop the read-model tables of ``runner_child.app``."""
    conn = await asyncpg.connect(url)
    try:
        for projection in (Ledger, Audit, Tally):
            for table in projection.metadata.tables:
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    finally:
        await conn.close()


@pytest.fixture
async def url(pg_clean_url: str) -> AsyncIterator[str]:
    """The test database, emptied, without the read models of other tests (dropped before
    and after)."""
    await drop_read_models(pg_clean_url)
    yield pg_clean_url
    await drop_read_models(pg_clean_url)


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
    """The writer's store, with the application's events."""
    opened = await connect(url, app.registry)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def runners(url: str, tmp_path: Path) -> AsyncIterator[Runners]:
    """Runner processes, killed at the end if still running."""
    started = Runners(url, tmp_path)
    try:
        yield started
    finally:
        await started.close()


# -- looking at the database ----------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str,
    runners: Runners | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = f"\n{runners.logs()}" if runners is not None else ""
            pytest.fail(f"{what}: not within {within}s{logs}")
        await asyncio.sleep(POLL)


async def write(
    store: EventStore, count: int, *, first: int = 1, streams: int = 50
) -> GlobalPosition:
    """Append ``count`` events one by one (seq ``first``...), Ticked and Tocked in turn,
    over ``streams`` streams: as many transactions as events, as a busy application does.
    Returns the last event's position."""
    last = START
    for seq in range(first, first + count):
        event = Ticked(seq=seq) if seq % 2 else Tocked(seq=seq)
        last = (await store.append(f"Clock-{seq % streams}", [event])).global_position
    return last


async def the_log(store: EventStore, through: GlobalPosition) -> list[RecordedEvent]:
    """Every event of the global log, in order, once readers see it up to ``through`` (an
    open transaction anywhere in the cluster - a runner's batch - holds readers back)."""

    async def visible() -> bool:
        return await store.head() >= through

    await eventually(visible, within=30, what=f"the log visible up to {tuple(through)}")
    records: list[RecordedEvent] = []
    after = START
    while batch := await store.read_all(after=after, limit=1000):
        records.extend(batch)
        after = batch[-1].global_position
    return records


async def holders(db: asyncpg.Connection) -> dict[str, str]:
    """Projection -> holder of its unexpired lease."""
    rows = await db.fetch(
        "SELECT name, holder FROM eventfold_leases "
        "WHERE expires_at > extract(epoch from clock_timestamp())"
    )
    return {row["name"]: row["holder"] for row in rows}


async def applied(db: asyncpg.Connection, projection: str) -> int:
    """How many events the projection's committed batches hold (0 before its tables exist:
    a runner creates them when it first takes the projection)."""
    if await db.fetchval("SELECT to_regclass($1)", f"{projection}_batches") is None:
        return 0
    return int(await db.fetchval(f"SELECT coalesce(sum(events), 0) FROM {projection}_batches"))


async def checkpoints(db: asyncpg.Connection) -> dict[str, GlobalPosition]:
    """Projection -> stored checkpoint."""
    rows = await db.fetch("SELECT name, transaction_id, position FROM eventfold_checkpoints")
    return {row["name"]: GlobalPosition(row[1], row[2]) for row in rows}


def ends(records: list[RecordedEvent]) -> dict[str, GlobalPosition]:
    """Projection -> position of the last event of its types."""
    last: dict[str, GlobalPosition] = {}
    for projection in (Ledger(), Audit(), Tally()):
        types = projection.event_types or frozenset()
        mine = [r for r in records if r.event_type in types]
        last[projection.name] = mine[-1].global_position if mine else START
    return last


async def caught_up(
    db: asyncpg.Connection, store: EventStore, runners: Runners, through: GlobalPosition,
    within: float = 30.0,
) -> list[RecordedEvent]:
    """Wait until every projection's checkpoint is at the last event of its types."""
    records = await the_log(store, through)
    wanted = ends(records)

    async def done() -> bool:
        stored = await checkpoints(db)
        return all(stored.get(name, START) >= position for name, position in wanted.items())

    await eventually(done, within=within, what="every projection at the head", runners=runners)
    return records


async def first_batch_after(
    db: asyncpg.Connection, projection: str, *, not_by: Iterable[int], since_id: int,
    killed_at: float, runners: Runners,
) -> float:
    """Wait for a batch of ``projection`` committed by a process other than ``not_by``;
    return the seconds from ``killed_at`` to seeing it (the failover time)."""
    excluded = list(not_by)

    async def committed() -> int | None:
        value = await db.fetchval(
            f"SELECT min(id) FROM {projection}_batches WHERE id > $1 AND pid <> ALL($2)",
            since_id, excluded,
        )
        return None if value is None else int(value)

    await eventually(
        committed, within=FAILOVER_LIMIT, what=f"another runner commits a {projection} batch",
        runners=runners,
    )
    seconds = time.monotonic() - killed_at
    failovers.append(seconds)
    return seconds


async def last_batch_id(db: asyncpg.Connection, projection: str) -> int:
    """The id of the projection's last committed batch (0: none)."""
    if await db.fetchval("SELECT to_regclass($1)", f"{projection}_batches") is None:
        return 0
    return int(await db.fetchval(f"SELECT coalesce(max(id), 0) FROM {projection}_batches"))


def expected_tally(records: Iterable[RecordedEvent]) -> dict[str, tuple[int, int]]:
    """Stream -> (events, sum of seq), as applying each event once gives."""
    tally: dict[str, tuple[int, int]] = {}
    for record in records:
        events, seq_sum = tally.get(record.stream_id, (0, 0))
        tally[record.stream_id] = (events + 1, seq_sum + int(record.data["seq"]))
    return tally


async def assert_applied_exactly(
    db: asyncpg.Connection, records: list[RecordedEvent],
    through: dict[str, GlobalPosition] | None = None,
) -> None:
    """Each read model holds each event of its types exactly once - those up to its
    checkpoint ``through[name]`` when given, else all of them - and nothing was parked."""

    def upto(name: str, types: frozenset[str]) -> list[RecordedEvent]:
        limit = None if through is None else through.get(name, START)
        return [
            r for r in records
            if r.event_type in types and (limit is None or r.global_position <= limit)
        ]

    for projection in (Ledger, Audit):
        wanted = upto(projection.name, projection.handled)
        rows = Counter(
            row[0] for row in await db.fetch(f"SELECT event_id FROM {projection.name}")
        )
        twice = sorted(str(event_id) for event_id, n in rows.items() if n > 1)
        missing = {r.event_id for r in wanted} - set(rows)
        extra = set(rows) - {r.event_id for r in wanted}
        assert not twice, f"{projection.name}: {len(twice)} events applied twice: {twice[:5]}"
        assert not missing, f"{projection.name}: {len(missing)} events never applied"
        assert not extra, f"{projection.name}: {len(extra)} events past its checkpoint applied"
    both = frozenset({Ticked.event_type, Tocked.event_type})
    tally = {
        row[0]: (row[1], row[2])
        for row in await db.fetch("SELECT stream_id, events, seq_sum FROM mp_tally")
    }
    assert tally == expected_tally(upto(Tally.name, both))
    assert await db.fetchval("SELECT count(*) FROM eventfold_parked_events") == 0


def report(request: pytest.FixtureRequest, label: str, seconds: float) -> None:
    """Record a measured failover in the test report (``-rP`` or junit xml shows it)."""
    request.node.user_properties.append((label, round(seconds, 3)))
    print(f"{request.node.name}: {label} {seconds:.2f}s")


# -- the tests ----------------------------------------------------------------------------------


async def test_two_runners_one_killed_mid_stream_every_event_applied_once(
    runners: Runners, db: asyncpg.Connection, store: EventStore,
    request: pytest.FixtureRequest,
) -> None:
    # One ``eventfold run`` and one runner of the library API share the work.
    a, b = await asyncio.gather(
        runners.start("runner-a", cli=True), runners.start("runner-b")
    )
    held = await eventually(
        lambda: _all_held(db), within=10, what="all projections held", runners=runners
    )
    # Each projection has one holder; between them the two processes hold all three.
    assert set(held) == set(NAMES) and set(held.values()) <= {a.holder, b.holder}

    writer = asyncio.create_task(write(store, 2000))
    try:
        await eventually(
            lambda: _at_least(db, Ledger.name, 400), within=30, what="ledger at 400",
            runners=runners,
        )
        victim = runners.by_holder((await holders(db))[Ledger.name])
        survivor = b if victim is a else a
        since = await last_batch_id(db, Ledger.name)
        killed_at = await runners.kill(victim)
        writing_at_kill = not writer.done()
        seconds = await first_batch_after(
            db, Ledger.name, not_by=[victim.pid], since_id=since, killed_at=killed_at,
            runners=runners,
        )
        report(request, "failover", seconds)
        last = await writer
    finally:
        writer.cancel()
    assert writing_at_kill, "the writer finished before the kill: the kill was not mid-stream"
    records = await caught_up(db, store, runners, last)
    assert len(records) == 2000
    assert set((await holders(db)).values()) == {survivor.holder}
    await runners.kill(survivor)
    await assert_applied_exactly(db, records)
    # Both processes committed ledger batches: the work really moved.
    pids = {row[0] for row in await db.fetch("SELECT DISTINCT pid FROM mp_ledger_batches")}
    assert pids == {victim.pid, survivor.pid}


async def test_three_runners_two_killed_at_different_times_every_event_applied_once(
    runners: Runners, db: asyncpg.Connection, store: EventStore,
    request: pytest.FixtureRequest,
) -> None:
    await asyncio.gather(*(runners.start(f"runner-{n}") for n in "abc"))
    await eventually(
        lambda: _all_held(db), within=10, what="all projections held", runners=runners
    )
    writer = asyncio.create_task(write(store, 2000))
    killed: list[int] = []
    try:
        for projection, mark in ((Ledger.name, 300), (Tally.name, 1200)):
            await eventually(
                lambda: _at_least(db, projection, mark), within=30,  # noqa: B023
                what=f"{projection} at {mark}", runners=runners,
            )
            victim = runners.by_holder((await holders(db))[projection])
            assert victim.alive
            since = await last_batch_id(db, projection)
            killed_at = await runners.kill(victim)
            killed.append(victim.pid)
            seconds = await first_batch_after(
                db, projection, not_by=killed, since_id=since, killed_at=killed_at,
                runners=runners,
            )
            report(request, f"failover {len(killed)} ({projection})", seconds)
        last = await writer
    finally:
        writer.cancel()
    records = await caught_up(db, store, runners, last)
    [survivor] = [child for child in runners.children if child.alive]
    assert set((await holders(db)).values()) == {survivor.holder}
    await runners.kill(survivor)
    await assert_applied_exactly(db, records)


async def test_a_runner_killed_between_handler_and_commit_leaves_no_effect(
    runners: Runners, db: asyncpg.Connection, store: EventStore, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    last = await write(store, 200)
    marker = tmp_path / "stalled"
    # The ledger's batch holding seq 120 writes its rows, then blocks before the commit.
    stalling = await runners.start(
        "runner-stalling", env={STALL_ENV: f"{Ledger.name}:120:{marker}"}
    )

    async def stalled() -> str | None:
        return marker.read_text() if marker.exists() else None

    assert await eventually(
        stalled, within=20, what="the handler reached the stall", runners=runners
    ) == str(stalling.pid)
    # The stalled batch's rows are written but not committed: nobody sees them.
    visible = await db.fetchval("SELECT count(*) FROM mp_ledger")
    assert visible == await applied(db, Ledger.name) < 120
    # A second runner waits for the lease the stalled one keeps renewing.
    successor = await runners.start("runner-successor")
    assert (await holders(db))[Ledger.name] == stalling.holder
    since = await last_batch_id(db, Ledger.name)
    killed_at = await runners.kill(stalling)
    seconds = await first_batch_after(
        db, Ledger.name, not_by=[stalling.pid], since_id=since, killed_at=killed_at,
        runners=runners,
    )
    report(request, "failover", seconds)
    records = await caught_up(db, store, runners, last)
    await runners.kill(successor)
    await assert_applied_exactly(db, records)
    # The successor redid the whole stalled batch: it applied seq 120, and the stalled
    # process's rows end where its last commit did.
    by_pid = dict(await db.fetch(
        "SELECT pid, max(last_position) FROM mp_ledger_batches GROUP BY pid"
    ))
    seq_120 = next(r for r in records if r.data["seq"] == 120)
    assert await db.fetchval(
        "SELECT pid FROM mp_ledger WHERE event_id = $1", seq_120.event_id
    ) == successor.pid
    assert await db.fetchval(
        "SELECT max(position) FROM mp_ledger WHERE pid = $1", stalling.pid
    ) == by_pid[stalling.pid] < seq_120.position


async def test_sigterm_mid_batch_finishes_the_batch_and_exits_0(
    runners: Runners, db: asyncpg.Connection, store: EventStore, tmp_path: Path,
) -> None:
    marker = tmp_path / "in-batch"
    # The ledger's batch holding seq 300 holds still (rows written, not committed) until
    # SIGUSR1, so SIGTERM surely arrives in the middle of a batch.
    child = await runners.start(
        "runner-graceful", env={STALL_ENV: f"{Ledger.name}:300:{marker}"}, cli=True
    )
    stop_writing = asyncio.Event()

    async def write_until_stopped() -> GlobalPosition:
        # Past seq 300 (the stalled batch), then on until told: mid-stream at SIGTERM
        # however fast the server is.
        last, seq = START, 1
        while (seq <= 400 or not stop_writing.is_set()) and seq <= 100_000:
            last = await write(store, 1, first=seq)
            seq += 1
        return last

    writer = asyncio.create_task(write_until_stopped())
    try:

        async def in_batch() -> bool:
            return marker.exists()

        await eventually(in_batch, within=30, what="the ledger inside a batch", runners=runners)
        await runners.terminate(child)
        writing_at_stop = not writer.done()
        stop_writing.set()
        # The runner is stopping; now the batch goes on, and must commit whole.
        os.kill(child.pid, signal.SIGUSR1)
        code = await runners.exited(child)
        last = await writer
    finally:
        writer.cancel()
    assert writing_at_stop, "the writer finished before SIGTERM: not mid-stream"
    assert code == 0, runners.logs()
    # Stopped cleanly: leases given back, the interrupted batch committed (seq 300 is in),
    # and each read model holds exactly the events up to its checkpoint.
    assert await holders(db) == {}
    stopped_at = await checkpoints(db)
    records = await the_log(store, last)
    seq_300 = next(r for r in records if r.data["seq"] == 300)
    assert seq_300.global_position <= stopped_at[Ledger.name] < records[-1].global_position
    await assert_applied_exactly(db, records, through=stopped_at)
    # Another runner carries on from the checkpoints.
    successor = await runners.start("runner-after", batch_size=200)
    records = await caught_up(db, store, runners, last)
    await runners.kill(successor)
    await assert_applied_exactly(db, records)


async def _all_held(db: asyncpg.Connection) -> dict[str, str] | None:
    held = await holders(db)
    return held if set(held) == set(NAMES) else None


async def _at_least(db: asyncpg.Connection, projection: str, events: int) -> bool:
    return await applied(db, projection) >= events
