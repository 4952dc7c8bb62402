"""Property: whatever mix of appends, deletions, truncations and scavenges, every backend
answers as a simple model of a stream's life says: each operation's outcome, what each
stream reads, its version, its life, whether it is listed, and what the global log still
holds."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    ConcurrencyError,
    Event,
    EventRegistry,
    EventStore,
    ExpectedVersion,
    StreamTombstoned,
    connect,
)

STREAMS = ["A-1", "A-2"]


class Noted(Event):
    n: int


@dataclass(frozen=True)
class Append:
    stream: str
    count: int
    expected: str  # "right", "wrong", "any", "no_stream", "exists"


@dataclass(frozen=True)
class Delete:
    stream: str
    hard: bool
    exact: bool


@dataclass(frozen=True)
class Truncate:
    stream: str
    back: int  # before = version + 1 - back, at least 1


@dataclass(frozen=True)
class Scavenge:
    pass


Operation = Append | Delete | Truncate | Scavenge

operations = st.lists(
    st.one_of(
        st.builds(
            Append,
            st.sampled_from(STREAMS),
            st.integers(1, 3),
            st.sampled_from(["right", "wrong", "any", "no_stream", "exists"]),
        ),
        st.builds(Delete, st.sampled_from(STREAMS), st.booleans(), st.booleans()),
        st.builds(Truncate, st.sampled_from(STREAMS), st.integers(0, 4)),
        st.just(Scavenge()),
    ),
    max_size=14,
)


@dataclass
class Model:
    """One stream as the rules say: its stored versions (type by version), its life."""

    stored: dict[int, str] = field(default_factory=dict)
    version: int = 0
    readable_from: int = 1
    deleted: int | None = None
    hard: bool = False

    def absent(self) -> bool:
        return self.version == 0 or self.deleted == self.version

    def write(self, event_type: str) -> int:
        self.version += 1
        self.stored[self.version] = event_type
        return self.version


async def _run(store: EventStore, program: list[Operation]) -> None:
    models = {stream: Model() for stream in STREAMS}
    for op in program:
        if isinstance(op, Scavenge):
            await store.scavenge()
            for model in models.values():
                model.stored = {
                    v: t
                    for v, t in model.stored.items()
                    if v >= model.readable_from or t.startswith("$")
                }
            continue
        model = models[op.stream]
        try:
            if isinstance(op, Append):
                choices: dict[str, ExpectedVersion] = {
                    "right": model.version,
                    "wrong": model.version + 1,
                    "any": ANY,
                    "no_stream": NO_STREAM,
                    "exists": STREAM_EXISTS,
                }
                result = await store.append(
                    op.stream,
                    [Noted(n=n) for n in range(op.count)],
                    expected_version=choices[op.expected],
                )
            elif isinstance(op, Delete):
                result = await store.delete_stream(
                    op.stream, hard=op.hard, expected_version=model.version if op.exact else None
                )
            else:
                before = max(1, model.version + 1 - op.back)
                result = await store.truncate_stream(op.stream, before)
        except StreamTombstoned:
            assert model.hard, op
            continue
        except ConcurrencyError:
            assert isinstance(op, Append) and not model.hard, op
            assert (
                op.expected == "wrong"
                or (op.expected == "no_stream" and not model.absent())
                or (op.expected == "exists" and model.absent())
            ), (op, model)
            continue
        assert not model.hard, op
        if isinstance(op, Append):
            assert op.expected != "wrong"
            assert op.expected != "no_stream" or model.absent()
            assert op.expected != "exists" or not model.absent()
            for _ in range(op.count):
                model.write("Noted")
        elif isinstance(op, Delete):
            version = model.write("$StreamDeleted")
            model.readable_from, model.deleted, model.hard = version + 1, version, op.hard
        else:
            model.write("$StreamTruncated")
            model.readable_from = max(model.readable_from, before)
        assert result.version == model.version, (op, model)

    log = await store.read_all(limit=10_000)
    for stream, model in models.items():
        readable = [v for v in sorted(model.stored) if v >= model.readable_from]
        records = await store.read_stream(stream)
        assert [r.stream_version for r in records] == readable, (stream, model)
        assert [r.event_type for r in records] == [model.stored[v] for v in readable]
        assert await store.stream_version(stream) == model.version
        assert [r.stream_version for r in log if r.stream_id == stream] == sorted(model.stored)
        life = await store.stream_life(stream)
        assert (life.readable_from, life.deleted_version, life.hard) == (
            model.readable_from,
            model.deleted,
            model.hard,
        ), (stream, model)
    listed = [info.stream_id for info in await store.list_streams()]
    assert listed == [stream for stream, model in models.items() if not model.absent()]
    assert [r.global_position for r in log] == sorted(r.global_position for r in log)


@pytest.mark.parametrize("url", ["memory://", "sqlite://"])
@settings(max_examples=60, deadline=None)
@given(program=operations)
async def test_every_backend_follows_the_model_of_a_streams_life(
    url: str, program: list[Operation]
) -> None:
    async with connect(url, EventRegistry([Noted])) as store:  # a new, empty store
        await _run(store, program)


@pytest.mark.postgres
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=operations)
async def test_postgres_follows_the_model_of_a_streams_life(
    pg_url: str, program: list[Operation]
) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "TRUNCATE eventfold_events, eventfold_stream_lifecycle, eventfold_snapshots "
            "RESTART IDENTITY"
        )
    finally:
        await conn.close()
    async with connect(pg_url, EventRegistry([Noted])) as store:
        await _run(store, program)
