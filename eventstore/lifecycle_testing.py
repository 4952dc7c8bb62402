"""The conformance suite's part on deleting, truncating and scavenging streams: mixed into
``EventStoreConformance``, so every backend runs it (see ``eventfold.eventstore.testing``)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from eventfold.eventstore.backends.memory import MemoryEventStore
from eventfold.eventstore.errors import (
    ConcurrencyError,
    ImportRefused,
    InvalidAppend,
    StreamTombstoned,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.lifecycle import LIVE, ScavengeProgress, StreamLife
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import (
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    StreamAppend,
)
from eventfold.eventstore.system_events import StreamDeleted, StreamTruncated


class _Noted(Event):
    """The suite's own event (registered on the store's registry by the suite)."""

    n: int


def _noted(*numbers: int) -> list[Event]:
    return [_Noted(n=n) for n in numbers]


async def _visible(store: EventStore, result: AppendResult) -> None:
    """Wait until the global log shows ``result`` (PostgreSQL's horizon may lag a moment)."""
    async with asyncio.timeout(30):
        while (head := await store.head()) < result.global_position:
            await store.wait_for_events(head, timeout=0.5)


class StreamLifecycleConformance:
    """Deleting, truncating and scavenging streams, on every backend."""

    @pytest.fixture(autouse=True)
    def _knows_noted(self, store: EventStore) -> None:
        store.registry.register(_Noted)

    async def _versions(self, store: EventStore, stream_id: str) -> list[int]:
        return [record.stream_version for record in await store.read_stream(stream_id)]

    async def test_a_soft_deleted_stream_reads_as_not_found(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1, 2))
        result = await store.delete_stream("Doc-1", expected_version=2)
        assert result.version == 3
        assert await store.read_stream("Doc-1") == []
        assert await store.read_stream("Doc-1", backwards=True) == []
        typed = await store.read_typed_stream("Doc-1")
        assert list(typed) == [] and typed.readable_from == 4
        assert await store.stream_version("Doc-1") == 3

    async def test_a_soft_deleted_stream_is_recreated_and_versions_continue(
        self, store: EventStore
    ) -> None:
        await store.append("Doc-1", _noted(1, 2))
        await store.delete_stream("Doc-1")
        result = await store.append("Doc-1", _noted(3), expected_version=NO_STREAM)
        assert result.version == 4
        assert await self._versions(store, "Doc-1") == [4]
        assert [store.registry.decode(r) for r in await store.read_stream("Doc-1")] == _noted(3)

    async def test_expected_versions_of_a_soft_deleted_stream(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1))
        await store.delete_stream("Doc-1")
        with pytest.raises(ConcurrencyError):
            await store.append("Doc-1", _noted(2), expected_version=STREAM_EXISTS)
        with pytest.raises(ConcurrencyError):
            await store.append("Doc-1", _noted(2), expected_version=1)
        assert (await store.append("Doc-1", _noted(2), expected_version=2)).version == 3
        with pytest.raises(ConcurrencyError):
            await store.append("Doc-1", _noted(3), expected_version=NO_STREAM)

    async def test_delete_checks_the_expected_version_and_writes_nothing_on_a_conflict(
        self, store: EventStore
    ) -> None:
        await store.append("Doc-1", _noted(1, 2))
        with pytest.raises(ConcurrencyError) as raised:
            await store.delete_stream("Doc-1", expected_version=1)
        assert raised.value.actual == 2
        assert await self._versions(store, "Doc-1") == [1, 2]
        with pytest.raises(ConcurrencyError):
            await store.truncate_stream("Doc-1", 2, expected_version=5)
        assert await self._versions(store, "Doc-1") == [1, 2]

    async def test_a_hard_deleted_stream_refuses_every_append(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1))
        await store.delete_stream("Doc-1", hard=True)
        assert await store.read_stream("Doc-1") == []
        for expected in (None, NO_STREAM, 2):
            with pytest.raises(StreamTombstoned, match="Doc-1") as raised:
                if expected is None:
                    await store.append("Doc-1", _noted(2))
                else:
                    await store.append("Doc-1", _noted(2), expected_version=expected)
            assert raised.value.stream_id == "Doc-1"
            assert "deleted" in str(raised.value)
        with pytest.raises(StreamTombstoned):
            await store.delete_stream("Doc-1")
        with pytest.raises(StreamTombstoned):
            await store.truncate_stream("Doc-1", 1)
        assert await store.stream_version("Doc-1") == 2

    async def test_append_streams_honours_tombstones_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("Doc-1", _noted(1))
        await store.delete_stream("Doc-1", hard=True)
        with pytest.raises(StreamTombstoned):
            await store.append_streams(
                [
                    StreamAppend("Doc-1", _noted(2)),
                    StreamAppend("Doc-2", _noted(3)),
                ]
            )
        assert await store.stream_version("Doc-2") == 0

    async def test_append_streams_recreates_a_soft_deleted_stream(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1))
        await store.delete_stream("Doc-1")
        [result] = await store.append_streams(
            [StreamAppend("Doc-1", _noted(2), expected_version=NO_STREAM)]
        )
        assert result.version == 3
        assert await self._versions(store, "Doc-1") == [3]

    async def test_truncate_hides_the_events_before_a_version(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1, 2, 3))
        result = await store.truncate_stream("Doc-1", 3, expected_version=3)
        assert result.version == 4
        assert await self._versions(store, "Doc-1") == [3, 4]
        records = await store.read_stream("Doc-1", from_version=1, backwards=False)
        assert store.registry.decode(records[-1]) == StreamTruncated(before=3)
        typed = await store.read_typed_stream("Doc-1")
        assert list(typed) == _noted(3) and typed.version == 4 and typed.readable_from == 3
        # A truncation never un-hides: an earlier ``before`` leaves the bound where it is.
        await store.truncate_stream("Doc-1", 2)
        assert await self._versions(store, "Doc-1") == [3, 4, 5]

    @pytest.mark.parametrize("before", [0, -1, 5, True, "2"])
    async def test_truncate_refuses_a_version_outside_the_stream(
        self, store: EventStore, before: object
    ) -> None:
        await store.append("Doc-1", _noted(1, 2, 3))
        with pytest.raises(InvalidAppend, match="Doc-1"):
            await store.truncate_stream("Doc-1", before)  # type: ignore[arg-type]
        assert await self._versions(store, "Doc-1") == [1, 2, 3]

    async def test_the_log_carries_the_system_events(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1, 2))
        await store.truncate_stream("Doc-1", 2)
        result = await store.delete_stream("Doc-1", hard=True)
        await _visible(store, result)
        log = await store.read_all()
        assert [store.registry.decode(record) for record in log] == [
            *_noted(1, 2),
            StreamTruncated(before=2),
            StreamDeleted(hard=True),
        ]
        wanted = await store.read_all(event_types=["$StreamDeleted"])
        assert [record.stream_id for record in wanted] == ["Doc-1"]

    async def test_scavenge_removes_what_deletions_and_truncations_hid(
        self, store: EventStore
    ) -> None:
        await store.append("Doc-1", _noted(1, 2))
        await store.delete_stream("Doc-1")
        await store.append("Doc-2", _noted(1, 2, 3))
        await store.truncate_stream("Doc-2", 3)
        await store.append("Doc-3", _noted(1))
        kept = await store.append("Doc-1", _noted(9))
        await _visible(store, kept)
        before = await store.read_all()

        planned = await store.scavenge(dry_run=True)
        assert planned.dry_run and planned.streams == {"Doc-1": 2, "Doc-2": 2}
        assert await store.read_all() == before

        seen: list[ScavengeProgress] = []
        done = await store.scavenge(on_progress=seen.append)
        assert not done.dry_run and done.streams == {"Doc-1": 2, "Doc-2": 2}
        assert done.events == 4
        assert seen and seen[-1].removed == seen[-1].total == 4
        after = await store.read_all()
        assert after == [
            record
            for record in before
            if not (record.stream_id == "Doc-1" and record.stream_version < 3)
            and not (record.stream_id == "Doc-2" and record.stream_version < 3)
        ]
        assert await self._versions(store, "Doc-1") == [4]
        assert await self._versions(store, "Doc-2") == [3, 4]
        assert await self._versions(store, "Doc-3") == [1]
        assert await store.stream_version("Doc-2") == 4
        assert (await store.scavenge()).streams == {}

    async def test_a_scavenged_stream_keeps_its_version_and_takes_appends(
        self, store: EventStore
    ) -> None:
        await store.append("Doc-1", _noted(1, 2))
        deleted = await store.delete_stream("Doc-1")
        await store.scavenge()
        assert await store.stream_version("Doc-1") == 3
        recreated = await store.append("Doc-1", _noted(3), expected_version=NO_STREAM)
        assert recreated.version == 4
        # Positions are never handed out again, whatever the scavenge removed.
        assert recreated.global_position > deleted.global_position
        kept = await store.append("Doc-2", _noted(1))
        await _visible(store, kept)
        assert [r.stream_version for r in await store.read_all() if r.stream_id == "Doc-1"] == [
            3,
            4,
        ]

    async def test_an_import_keeps_deleted_and_truncated_streams_so(
        self, store: EventStore
    ) -> None:
        source = MemoryEventStore(store.registry)
        await source.append("Doc-1", _noted(1, 2))
        await source.delete_stream("Doc-1", hard=True)
        await source.append("Doc-2", _noted(1, 2, 3))
        await source.truncate_stream("Doc-2", 3)
        await source.append("Doc-3", _noted(1))
        await source.delete_stream("Doc-3")
        await store.import_events(await source.read_all())
        assert await self._versions(store, "Doc-1") == []
        with pytest.raises(StreamTombstoned):
            await store.append("Doc-1", _noted(3))
        assert await self._versions(store, "Doc-2") == [3, 4]
        assert await self._versions(store, "Doc-3") == []
        assert (await store.append("Doc-3", _noted(2), expected_version=NO_STREAM)).version == 3
        assert (await store.scavenge(dry_run=True)).streams == {"Doc-1": 2, "Doc-2": 2, "Doc-3": 1}

    async def _listed(self, store: EventStore, **options: object) -> list[str]:
        return [info.stream_id for info in await store.list_streams(**options)]  # type: ignore[arg-type]

    async def test_deleted_streams_are_not_listed_until_recreated(self, store: EventStore) -> None:
        await store.append("Doc", _noted(1))
        await store.delete_stream("Doc")
        for stream_id in ("Doc-1", "Doc-2", "Doc-3", "Doc-4", "Doc-5", "Note-1"):
            await store.append(stream_id, _noted(1))
        await store.delete_stream("Doc-1")
        await store.delete_stream("Doc-2", hard=True)
        await store.delete_stream("Doc-4")
        await store.append("Doc-4", _noted(2), expected_version=NO_STREAM)
        await store.truncate_stream("Doc-5", 2)
        listed = ["Doc-3", "Doc-4", "Doc-5", "Note-1"]
        assert await self._listed(store) == listed
        assert await self._listed(store, category="Doc") == listed[:3]
        assert [info.version for info in await store.list_streams(category="Doc")] == [1, 3, 2]
        assert await self._listed(store, category="Doc", limit=1) == ["Doc-3"]
        # Paging stays exact with hidden streams before, between and after the pages.
        for limit in (1, 2, 3):
            paged: list[str] = []
            after = None
            while page := await self._listed(store, after=after, limit=limit):
                assert len(page) <= limit
                paged.extend(page)
                after = page[-1]
            assert paged == listed
        assert await self._listed(store, after="Doc", limit=1) == ["Doc-3"]
        assert await self._listed(store, category="Doc", after="Doc-0", limit=1) == ["Doc-3"]
        await store.scavenge()
        assert await self._listed(store) == listed
        await store.append("Doc-1", _noted(2))
        assert await self._listed(store, category="Doc") == ["Doc-1", *listed[:3]]

    async def test_stream_life_says_what_deletions_and_truncations_left(
        self, store: EventStore
    ) -> None:
        assert await store.stream_life("Doc-1") == LIVE
        await store.append("Doc-1", _noted(1, 2, 3))
        assert await store.stream_life("Doc-1") == LIVE
        await store.truncate_stream("Doc-1", 2)
        assert await store.stream_life("Doc-1") == StreamLife(readable_from=2)
        await store.delete_stream("Doc-1")
        life = await store.stream_life("Doc-1")
        assert life == StreamLife(readable_from=6, deleted_version=5, hard=False)
        assert life.reads_as_absent(await store.stream_version("Doc-1"))
        await store.append("Doc-1", _noted(4))
        assert not (await store.stream_life("Doc-1")).reads_as_absent(6)
        await store.delete_stream("Doc-1", hard=True)
        assert await store.stream_life("Doc-1") == StreamLife(8, 7, hard=True)

    async def test_an_import_into_a_tombstoned_stream_is_refused(self, store: EventStore) -> None:
        await store.append("Doc-1", _noted(1))
        await store.delete_stream("Doc-1", hard=True)
        source = MemoryEventStore(store.registry)
        await source.append("Doc-2", _noted(1))
        await source.append("Doc-1", _noted(1, 2, 3))
        records = await source.read_all()
        with pytest.raises(ImportRefused, match=r"'Doc-1'.*hard-deleted at version 2") as raised:
            await store.import_events(records[:1] + records[-1:])
        assert raised.value.stream_id == "Doc-1"
        assert raised.value.event_id == records[-1].event_id
        assert await store.stream_version("Doc-2") == 0
        assert await store.stream_version("Doc-1") == 2

    async def test_an_import_of_events_after_a_tombstone_in_its_batch_is_refused(
        self, store: EventStore
    ) -> None:
        source = MemoryEventStore(store.registry)
        await source.append("Doc-1", _noted(1))
        await source.delete_stream("Doc-1", hard=True)
        records = await source.read_all()
        after = dataclasses.replace(records[0], event_id=uuid.uuid4(), stream_version=3)
        with pytest.raises(ImportRefused, match=r"'Doc-1'.*hard-deleted at version 2"):
            await store.import_events([*records, after])
        assert await store.stream_version("Doc-1") == 0
