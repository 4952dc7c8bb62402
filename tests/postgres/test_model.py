"""Property: whatever mix of appends and reads, the store holds what a simple model says."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.eventstore import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    ConcurrencyError,
    ExpectedVersion,
    NewEvent,
)
from eventfold.eventstore.backends.postgres import PostgresEventStore

from .conftest import Deposited, wait_visible

pytestmark = pytest.mark.postgres

STREAMS = ["A-1", "A-2", "B-1"]


@dataclass(frozen=True)
class Append:
    stream: str
    amounts: tuple[int, ...]
    expected: str  # "right", "wrong", "any", "no_stream", "exists"
    retry_last: bool  # re-send the previous batch of this stream instead (idempotency)


@dataclass(frozen=True)
class Read:
    stream: str


operations = st.lists(
    st.one_of(
        st.builds(
            Append,
            st.sampled_from(STREAMS),
            st.lists(st.integers(0, 9), min_size=1, max_size=3).map(tuple),
            st.sampled_from(["right", "wrong", "any", "no_stream", "exists"]),
            st.booleans(),
        ),
        st.builds(Read, st.sampled_from(STREAMS)),
    ),
    max_size=12,
)


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE eventfold_events RESTART IDENTITY")
    finally:
        await conn.close()


@settings(
    max_examples=30, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(program=operations, concurrent=st.booleans())
async def test_store_matches_the_model(
    pg_store: PostgresEventStore, pg_clean_url: str, program: list[Append | Read],
    concurrent: bool,
) -> None:
    await _reset(pg_clean_url)
    model: dict[str, list[int]] = {stream: [] for stream in STREAMS}
    last_batch: dict[str, list[NewEvent]] = {}

    async def run(op: Append | Read) -> None:
        if isinstance(op, Read):
            events = await pg_store.read_stream(op.stream)
            if not concurrent:
                assert [e.data["amount"] for e in events] == model[op.stream]
            return
        if op.retry_last and op.stream in last_batch:
            batch = last_batch[op.stream]
            result = await pg_store.append(op.stream, batch, expected_version=ANY)
            assert result.version >= len(batch)  # the original result, nothing new
            return
        batch = [NewEvent(Deposited(amount=amount)) for amount in op.amounts]
        current = len(model[op.stream])
        choices: dict[str, ExpectedVersion] = {
            "right": current, "wrong": current + 1, "any": ANY, "no_stream": NO_STREAM,
            "exists": STREAM_EXISTS,
        }
        expected = choices[op.expected]
        if concurrent and op.expected not in ("any",):
            expected = ANY  # versions are unknowable while racing; order is the property
        try:
            await pg_store.append(op.stream, batch, expected_version=expected)
        except ConcurrencyError as exc:
            assert not concurrent
            assert exc.actual == current
            assert op.expected in ("wrong", "no_stream", "exists")
            return
        assert concurrent or op.expected in ("right", "any") or (
            op.expected == "no_stream" and current == 0
        ) or (op.expected == "exists" and current > 0)
        model[op.stream].extend(op.amounts)
        last_batch[op.stream] = batch

    if concurrent:
        await asyncio.gather(*(run(op) for op in program))
    else:
        for op in program:
            await run(op)

    for stream in STREAMS:
        events = await pg_store.read_stream(stream)
        assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
        if concurrent:  # batches stay whole; their order is the race's
            assert sorted(e.data["amount"] for e in events) == sorted(model[stream])
        else:
            assert [e.data["amount"] for e in events] == model[stream]
        assert await pg_store.stream_version(stream) == len(events)
    positions = [START]
    for stream in STREAMS:
        positions += [e.global_position for e in await pg_store.read_stream(stream)]
    await wait_visible(pg_store, max(positions))
    log = await pg_store.read_all(limit=1000)
    assert sum(map(len, model.values())) == len(log)
    assert [e.global_position for e in log] == sorted(e.global_position for e in log)
