"""The causation trace: the tree of events one event caused, or of one correlation id."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import Result
from saga_support import Env, Fulfilment, Order, Stock, instance_is, settle
from typer.testing import CliRunner

from eventfold.cli import app as cli
from eventfold.eventstore.causation import correlated
from eventfold.projections import Runner
from eventfold.projections.trace import TraceNotFound, render, trace


def shape(roots: list) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    return [(depth, record.event_type) for root in roots for depth, record in root.walk()]


EXPECTED = [
    (0, "OrderPlaced"),
    (1, "StockReserved"),
    (2, "PaymentRequested"),
    (2, "PaymentCharged"),
    (3, "OrderConfirmed"),
]


async def run_saga(env: Env) -> None:
    manager = Fulfilment()
    await env.repository.create(Stock, "apple", lambda s: s.receive(5))
    async with Runner(env.store, [manager], engine=env.engine) as runner:
        with correlated("request-7"):
            await env.repository.create(Order, "o1", lambda o: o.place("apple", 2, 30))
        await settle(env.store, runner, instance_is(manager, env.engine, "o1", "completed"))


async def test_the_tree_of_an_event_and_of_a_correlation(env: Env) -> None:
    await run_saga(env)
    (placed,) = await env.store.read_stream("Order-o1", to_version=1)

    assert shape(await trace(env.store, placed.event_id)) == EXPECTED
    assert shape(await trace(env.store, "request-7")) == EXPECTED
    # From the middle of the conversation: only what it caused.
    (reserved,) = (await env.store.read_stream("Stock-apple"))[1:]
    assert shape(await trace(env.store, str(reserved.event_id))) == [
        (0, "StockReserved"), (1, "PaymentRequested"), (1, "PaymentCharged"),
        (2, "OrderConfirmed"),
    ]
    # An event that caused nothing and started no correlation is a tree of one.
    (received,) = (await env.store.read_stream("Stock-apple"))[:1]
    assert shape(await trace(env.store, received.event_id)) == [
        (0, "StockReceived"),
    ]
    with pytest.raises(TraceNotFound, match="no event with id nothing-here"):
        await trace(env.store, "nothing-here")
    assert render(await trace(env.store, "request-7")).label


async def invoke(url: str, *args: str) -> Result:
    """``eventfold events trace`` in a thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(
        CliRunner().invoke, cli, ["--database", url, "events", "trace", *args]
    )


async def test_eventfold_events_trace(env: Env) -> None:
    await run_saga(env)
    result = await invoke(env.url, "request-7", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["depth"], line["event_type"]) for line in lines] == EXPECTED

    result = await invoke(env.url, "request-7")
    assert result.exit_code == 0, result.output
    assert "OrderPlaced" in result.stdout and "OrderConfirmed" in result.stdout

    result = await invoke(env.url, "missing")
    assert result.exit_code != 0
