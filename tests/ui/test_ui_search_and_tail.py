"""Finding streams by prefix, and the tail as server-sent events, on the memory store."""

from __future__ import annotations

import asyncio
import json

from eventfold import NO_STREAM, Event, EventRegistry, connect
from eventfold.eventstore import START
from eventfold.ui import find_streams
from eventfold.ui.formatting import parse_position, position
from eventfold.ui.live import tail_messages


class NoteTaken(Event):
    """A test event."""

    text: str


STREAMS = ["Order-1", "Order-10", "Order-1a", "Order-2", "OrderLine-1", "Payment-1", "Z-1"]


async def test_a_prefix_finds_its_own_stream_and_the_run_after_it() -> None:
    async with connect("memory://", EventRegistry([NoteTaken])) as store:
        for stream_id in STREAMS:
            await store.append(stream_id, [NoteTaken(text="x")], expected_version=NO_STREAM)

        async def ids(**query: object) -> tuple[list[str], str | None]:
            page = await find_streams(store, **query)  # type: ignore[arg-type]
            return [info.stream_id for info in page.streams], page.next_after

        assert await ids(prefix="Order-1") == (["Order-1", "Order-10", "Order-1a"], None)
        assert await ids(prefix="Order") == (STREAMS[:5], None)
        assert await ids(prefix="Order", category="Order") == (STREAMS[:4], None)
        assert await ids(prefix="Order-1", category="OrderLine") == ([], None)
        assert await ids(prefix="Order", limit=2) == (["Order-1", "Order-10"], "Order-10")
        assert await ids(prefix="Order", after="Order-10", limit=2) == (
            ["Order-1a", "Order-2"], "Order-2"
        )
        assert await ids(prefix="Order", after="Order-2", limit=2) == (["OrderLine-1"], None)
        assert await ids(prefix="Nothing") == ([], None)
        assert await ids(prefix=" Order") == ([], None)  # no stream id has spaces around
        assert await ids(limit=7) == (STREAMS, None)
        assert await ids(limit=6) == (STREAMS[:6], "Payment-1")


async def test_the_tail_streams_each_event_with_its_position_as_id() -> None:
    async with connect("memory://", EventRegistry([NoteTaken])) as store:
        await store.append("Note-1", [NoteTaken(text="before")])
        messages = tail_messages(store, START)
        first = await asyncio.wait_for(anext(messages), timeout=10)
        # One that arrives while the tail waits is sent as it commits.
        waiting = asyncio.ensure_future(anext(messages))
        await store.append("Note-2", [NoteTaken(text="while following")])
        second = await asyncio.wait_for(waiting, timeout=10)
        await messages.aclose()
        [record_1] = await store.read_stream("Note-1")
        [record_2] = await store.read_stream("Note-2")
    assert first.startswith(f"id: {position(record_1.global_position)}\ndata: ")
    assert first.endswith("\n\n")
    assert json.loads(first.split("data: ", 1)[1])["stream_id"] == "Note-1"
    shown = json.loads(second.split("data: ", 1)[1])
    assert shown["stream_id"] == "Note-2" and shown["data"] == '{"text":"while following"}'
    assert parse_position(position(record_2.global_position)) == record_2.global_position


async def test_an_idle_tail_keeps_the_stream_alive_and_ends_with_it() -> None:
    async with connect("memory://", EventRegistry([NoteTaken])) as store:
        before = asyncio.all_tasks()
        messages = tail_messages(store, await store.head(), keep_alive=0.05)
        assert await asyncio.wait_for(anext(messages), timeout=10) == ": keep-alive\n\n"
        assert asyncio.all_tasks() > before  # the follower of the log waits for events
        await messages.aclose()  # the browser went away
        assert asyncio.all_tasks() == before
