"""The archive's part of the behavioural suite (``EventStoreConformance`` includes it).

Kept in a module of its own so the suite's archive checks read together; a backend's test
module subclasses ``EventStoreConformance`` and gets these with the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from eventfold.eventstore.archiving import ARCHIVE_BATCH
from eventfold.eventstore.errors import InvalidRead
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import START, RecordedEvent


async def _whole(
    read: Callable[..., Awaitable[list[RecordedEvent]]], batch: int = 7
) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    after = START
    while page := await read(after=after, limit=batch):
        out.extend(page)
        after = page[-1].global_position
    return out


class ArchiveConformance:
    """``archive_stream`` and the reads that see archived events, on every backend."""

    async def _stream(self, store: EventStore, stream_id: str, n: int) -> None:
        from eventfold.eventstore.testing import ItemAdded  # the suite's registry

        await store.append(stream_id, [ItemAdded(sku=f"sku-{i}") for i in range(1, n + 1)])

    async def test_archiving_moves_all_but_the_last_event(self, store: EventStore) -> None:
        await self._stream(store, "cart-1", 5)
        assert await store.archive_stream("cart-1") == 4
        assert [e.stream_version for e in await store.read_stream("cart-1")] == [5]
        assert await store.stream_version("cart-1") == 5
        assert [(s.stream_id, s.version) for s in await store.list_streams()] == [("cart-1", 5)]

    async def test_archiving_before_a_version_moves_only_those_below_it(
        self, store: EventStore
    ) -> None:
        await self._stream(store, "cart-1", 5)
        assert await store.archive_stream("cart-1", before=3) == 2
        assert [e.stream_version for e in await store.read_stream("cart-1")] == [3, 4, 5]
        typed = await store.read_typed_stream("cart-1")
        assert [event.sku for event in typed] == ["sku-3", "sku-4", "sku-5"]  # type: ignore[attr-defined]
        assert await store.archive_stream("cart-1", before=2) == 0
        assert await store.archive_stream("cart-1", before=99) == 2
        assert [e.stream_version for e in await store.read_stream("cart-1")] == [5]

    async def test_an_archived_stream_appends_on_and_its_history_reads_whole(
        self, store: EventStore
    ) -> None:
        await self._stream(store, "cart-1", 3)
        await store.archive_stream("cart-1")
        await self._stream(store, "cart-1", 2)
        assert [e.stream_version for e in await store.read_stream("cart-1")] == [3, 4, 5]
        history = await store.read_stream_with_archive("cart-1")
        assert [e.stream_version for e in history] == [1, 2, 3, 4, 5]
        assert [e.data["sku"] for e in history] == ["sku-1", "sku-2", "sku-3", "sku-1", "sku-2"]

    async def test_archiving_nothing_moves_nothing(self, store: EventStore) -> None:
        assert await store.archive_stream("cart-none") == 0
        await self._stream(store, "cart-1", 1)
        assert await store.archive_stream("cart-1") == 0
        await self._stream(store, "cart-2", 3)
        assert await store.archive_stream("cart-2") == 2
        assert await store.archive_stream("cart-2") == 0

    async def test_the_log_leaves_archived_events_out_and_the_whole_log_keeps_them(
        self, store: EventStore
    ) -> None:
        for round_ in range(3):
            for stream in ("cart-1", "cart-2", "order-1"):
                await self._stream(store, stream, round_ + 1)
        before = await _whole(store.read_all_with_archive)
        assert [e.event_id for e in before] == [e.event_id for e in await _whole(store.read_all)]
        await store.archive_stream("cart-1")
        await store.archive_stream("order-1", before=3)
        hot = await _whole(store.read_all)
        archived = {e.event_id for e in await store.read_stream_with_archive("cart-1")} - {
            e.event_id for e in await store.read_stream("cart-1")
        }
        assert len(archived) == 5
        assert [e.event_id for e in hot] == [
            e.event_id
            for e in before
            if e.event_id not in archived
            and not (e.stream_id == "order-1" and e.stream_version < 3)
        ]
        assert await _whole(store.read_all_with_archive) == before
        assert await store.read_event(next(iter(archived))) == []

    async def test_archiving_goes_in_batches_and_keeps_order(self, store: EventStore) -> None:
        from eventfold.eventstore.testing import ItemAdded

        n = ARCHIVE_BATCH + 3
        await store.append("big-1", [ItemAdded(sku=f"sku-{i}") for i in range(n)])
        assert await store.archive_stream("big-1") == n - 1
        history = await store.read_stream_with_archive("big-1")
        assert [e.stream_version for e in history] == list(range(1, n + 1))

    async def test_two_archivers_at_once_move_each_event_once(self, store: EventStore) -> None:
        await self._stream(store, "cart-1", 40)
        moved = await asyncio.gather(*(store.archive_stream("cart-1") for _ in range(2)))
        assert sum(moved) == 39
        history = await store.read_stream_with_archive("cart-1")
        assert [e.stream_version for e in history] == list(range(1, 41))

    @pytest.mark.parametrize("before", [0, -1, True, "3"])
    async def test_bad_archive_arguments_are_refused(
        self, store: EventStore, before: object
    ) -> None:
        with pytest.raises(InvalidRead, match="before"):
            await store.archive_stream("cart-1", before=before)  # type: ignore[arg-type]
        with pytest.raises(InvalidRead):
            await store.archive_stream("")

    async def test_a_truncation_hides_archived_events_and_a_scavenge_removes_them(
        self, store: EventStore
    ) -> None:
        await self._stream(store, "cart-1", 6)
        await store.archive_stream("cart-1", before=5)  # versions 1-4 archived
        await store.truncate_stream("cart-1", 3)  # hides 1-2 (archived) and appends v7
        history = await store.read_stream_with_archive("cart-1")
        assert [e.stream_version for e in history] == [3, 4, 5, 6, 7]
        dry = await store.scavenge(dry_run=True)
        assert dry.streams == {"cart-1": 2}
        assert (await store.scavenge()).streams == {"cart-1": 2}
        whole = await _whole(store.read_all_with_archive)
        assert [e.stream_version for e in whole] == [3, 4, 5, 6, 7]
        assert (await store.scavenge()).streams == {}

    async def test_a_deleted_stream_reads_empty_with_its_archive_too(
        self, store: EventStore
    ) -> None:
        await self._stream(store, "cart-1", 4)
        await store.archive_stream("cart-1")
        await store.delete_stream("cart-1")
        assert await store.read_stream_with_archive("cart-1") == []
        assert (await store.scavenge()).streams == {"cart-1": 4}
        assert [e.event_type for e in await _whole(store.read_all_with_archive)] == [
            "$StreamDeleted"
        ]
