"""The behavioural suite every EventStore backend passes.

Subclass ``EventStoreConformance`` in a test module and give it a ``store`` fixture that
yields an empty, migrated store opened with ``conformance_registry()``::

    class TestMyBackend(EventStoreConformance):
        @pytest.fixture
        async def store(self):
            async with connect("mybackend://...", conformance_registry()) as store:
                yield store

The suite needs pytest and pytest-asyncio (asyncio_mode = "auto").
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from eventfold.eventstore.archive_testing import ArchiveConformance
from eventfold.eventstore.encoding import MAX_DEPTH
from eventfold.eventstore.errors import (
    ConcurrencyError,
    DuplicateEventId,
    ImportRefused,
    InvalidAppend,
    InvalidRead,
    StreamsConflict,
    UnregisteredEvent,
)
from eventfold.eventstore.event import Event
from eventfold.eventstore.keys import KeyStore, SubjectKey, new_key_id, new_secret
from eventfold.eventstore.lifecycle_testing import StreamLifecycleConformance
from eventfold.eventstore.protocol import EventStore
from eventfold.eventstore.records import (
    ANY,
    NO_STREAM,
    START,
    STREAM_EXISTS,
    GlobalPosition,
    HorizonHolder,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    partition_of,
)
from eventfold.eventstore.registry import EventRegistry, StoredShape


class Colour(enum.Enum):
    """An enum field for round-trip checks."""

    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    """A nested model for round-trip checks."""

    street: str
    city: str


class ItemAdded(Event):
    """A plain event of the suite."""

    sku: str
    quantity: int = 1


class ItemRemoved(Event):
    """A second event type of the suite."""

    sku: str


class EverythingHappened(Event):
    """Every JSON-compatible field type pydantic supports, to prove lossless round trips."""

    amount: Decimal
    at: datetime
    ref: uuid.UUID
    colour: Colour
    address: Address
    tags: list[str]
    scores: dict[str, float]
    note: str | None = None
    flag: bool = False


class Measured(Event):
    """Floats and free-form JSON: what the store must refuse rather than alter."""

    value: float = 0.0
    detail: Any = None


class Unregistered(Event):
    """An event class deliberately left out of the suite's registry."""

    x: int = 0


class ItemAddedV2(Event):
    """``ItemAdded`` as it looks after a schema change (for the upcasting check)."""

    event_type = "ItemAdded"
    schema_version = 2

    sku: str
    quantity: int
    source: str


class _AddSource:
    """Upcaster of the suite: ItemAdded v1 -> v2 gains ``source``."""

    def upcast(
        self, event_type: str, schema_version: int, data: dict[str, Any]
    ) -> list[StoredShape]:
        if (event_type, schema_version) == ("ItemAdded", 1):
            return [("ItemAdded", 2, {**data, "source": "legacy"})]
        if (event_type, schema_version) == ("ItemRemoved", 1):
            return [("ItemDropped", 1, data)]
        return [(event_type, schema_version, data)]

    def stored_types_of(self, event_types: Iterable[str]) -> set[str]:
        wanted = set(event_types)
        return wanted | ({"ItemRemoved"} if "ItemDropped" in wanted else set())


class ItemDropped(Event):
    """``ItemRemoved`` under its new name (for the rename check)."""

    sku: str


def conformance_registry() -> EventRegistry:
    """The registry the suite's store must be opened with."""
    return EventRegistry([ItemAdded, ItemRemoved, EverythingHappened, Measured])


def _added(n: int) -> list[ItemAdded]:
    return [ItemAdded(sku=f"sku-{i}", quantity=i) for i in range(1, n + 1)]


def _everything(scores: dict[str, float]) -> EverythingHappened:
    return EverythingHappened(
        amount=Decimal("12345678901234567890.000000001"),
        at=datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone_plus(2)),
        ref=uuid.UUID("0190a9d2-8f1e-7c3a-9b4d-2e6f8a1c3b5d"),
        colour=Colour.GREEN,
        address=Address(street="1 Main St", city="Zürich"),
        tags=["a", "ü", ""],
        scores=scores,
        note=None,
        flag=True,
    )


def _nested(levels: int) -> Any:
    """A JSON value of ``levels`` nested objects."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


async def _read_whole_log(store: EventStore, batch: int = 1000) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    after = START
    while page := await store.read_all(after=after, limit=batch):
        out.extend(page)
        after = page[-1].global_position
    return out


class EventStoreConformance(ArchiveConformance, StreamLifecycleConformance):
    """Behaviour every backend shares; subclass it with a ``store`` fixture."""

    @pytest.fixture(autouse=True)
    def _reads_see_own_writes(self, store: EventStore) -> None:
        """Let each append return once the global log shows it.

        On PostgreSQL the log shows an event only when every older transaction in the
        cluster has finished (the horizon that keeps readers from skipping a late commit),
        so a busy server can hide a fresh append from ``read_all`` and ``head`` for a
        moment; the suite checks the log's contents, not that moment.
        """
        append = store.append

        async def append_then_wait(*args: Any, **kwargs: Any) -> Any:
            result = await append(*args, **kwargs)
            async with asyncio.timeout(30):
                while (head := await store.head()) < result.global_position:
                    await store.wait_for_events(head, timeout=0.5)
            return result

        store.append = append_then_wait  # type: ignore[method-assign]

    # --- appending and expected versions -------------------------------------------------

    async def test_append_to_new_stream_and_read_back(self, store: EventStore) -> None:
        result = await store.append("Cart-1", _added(3), expected_version=NO_STREAM)
        assert result.version == 3
        assert result.stream_id == "Cart-1"
        assert result.last_position - result.first_position == 2
        events = await store.read_stream("Cart-1")
        assert [e.stream_version for e in events] == [1, 2, 3]
        assert [store.registry.decode(e) for e in events] == _added(3)
        assert [e.position for e in events] == list(
            range(result.first_position, result.last_position + 1)
        )
        assert all(e.stream_id == "Cart-1" and e.category == "Cart" for e in events)
        assert all(e.recorded_at.tzinfo is not None for e in events)
        assert events[-1].global_position == result.global_position

    async def test_exact_expected_version(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(2), expected_version=NO_STREAM)
        result = await store.append("Cart-1", _added(1), expected_version=2)
        assert result.version == 3

    async def test_stale_expected_version_raises_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("Cart-1", _added(2), expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("Cart-1", _added(3), expected_version=1)
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "Cart-1", 1, 2,
        )
        assert await store.stream_version("Cart-1") == 2
        assert len(await _read_whole_log(store)) == 2

    async def test_expected_version_ahead_of_stream_raises(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1))
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("Cart-1", _added(1), expected_version=5)
        assert caught.value.actual == 1

    async def test_no_stream_on_existing_stream_raises(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1))
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("Cart-1", _added(1), expected_version=NO_STREAM)
        assert caught.value.expected is NO_STREAM
        assert caught.value.actual == 1

    async def test_zero_means_no_stream(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1), expected_version=0)
        with pytest.raises(ConcurrencyError):
            await store.append("Cart-1", _added(1), expected_version=0)

    async def test_stream_exists(self, store: EventStore) -> None:
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("Cart-1", _added(1), expected_version=STREAM_EXISTS)
        assert caught.value.actual == 0
        await store.append("Cart-1", _added(1), expected_version=NO_STREAM)
        result = await store.append("Cart-1", _added(1), expected_version=STREAM_EXISTS)
        assert result.version == 2

    async def test_any(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1), expected_version=ANY)
        result = await store.append("Cart-1", _added(2), expected_version=ANY)
        assert result.version == 3

    async def test_streams_are_independent(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(2), expected_version=NO_STREAM)
        await store.append("Cart-2", _added(1), expected_version=NO_STREAM)
        assert await store.stream_version("Cart-1") == 2
        assert await store.stream_version("Cart-2") == 1
        assert await store.stream_version("Cart-3") == 0

    async def test_concurrent_appends_with_expected_versions(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1), expected_version=NO_STREAM)
        outcomes = await asyncio.gather(
            *(store.append("Cart-1", _added(1), expected_version=1) for _ in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
        assert all(
            isinstance(o, ConcurrencyError) for o in outcomes if isinstance(o, BaseException)
        )
        assert [e.stream_version for e in await store.read_stream("Cart-1")] == [1, 2]

    # --- appending to several streams at once -------------------------------------------

    async def test_append_streams_writes_every_stream_in_one_transaction(
        self, store: EventStore
    ) -> None:
        await store.append("Cart-2", _added(1))
        results = await store.append_streams([
            StreamAppend("Cart-2", _added(2), expected_version=1),
            StreamAppend("Cart-1", _added(1), expected_version=NO_STREAM),
            StreamAppend("Order-1", _added(3), expected_version=ANY),
        ])
        assert [(r.stream_id, r.version) for r in results] == [
            ("Cart-2", 3), ("Cart-1", 1), ("Order-1", 3),
        ]
        assert len({r.transaction_id for r in results}) == 1
        await _until_visible(store)
        log = await _read_whole_log(store)
        # After the first append, the call's events follow on one another, stream by
        # stream in stream id order, each where its result says.
        assert [(r.stream_id, r.stream_version) for r in log[1:]] == [
            ("Cart-1", 1), ("Cart-2", 2), ("Cart-2", 3),
            ("Order-1", 1), ("Order-1", 2), ("Order-1", 3),
        ]
        assert [r.position for r in log[1:]] == sorted(r.position for r in log[1:])
        for result in results:
            stored = [r for r in log if r.stream_id == result.stream_id]
            assert stored[-1].global_position == result.global_position
            assert stored[-1].stream_version == result.version
        assert [store.registry.decode(r) for r in await store.read_stream("Order-1")] == (
            _added(3)
        )

    async def test_append_streams_writes_nothing_on_a_conflict_and_names_every_stream(
        self, store: EventStore
    ) -> None:
        await store.append("Cart-1", _added(2))
        await store.append("Cart-3", _added(1))
        with pytest.raises(StreamsConflict) as caught:
            await store.append_streams([
                StreamAppend("Cart-3", _added(1), expected_version=NO_STREAM),
                StreamAppend("Cart-2", _added(1), expected_version=NO_STREAM),
                StreamAppend("Cart-1", _added(1), expected_version=1),
                StreamAppend("Cart-4", _added(1), expected_version=STREAM_EXISTS),
            ])
        assert [(c.stream_id, c.expected, c.actual) for c in caught.value.conflicts] == [
            ("Cart-1", 1, 2), ("Cart-3", NO_STREAM, 1), ("Cart-4", STREAM_EXISTS, 0),
        ]
        assert isinstance(caught.value, ConcurrencyError)
        assert caught.value.stream_id == "Cart-1"
        assert "'Cart-3' is at version 1" in str(caught.value)
        await _until_visible(store)
        assert [r.stream_id for r in await _read_whole_log(store)] == [
            "Cart-1", "Cart-1", "Cart-3",
        ]
        assert await store.stream_version("Cart-2") == 0

    async def test_append_streams_expecting_a_version_beyond_any_stream_is_a_conflict(
        self, store: EventStore
    ) -> None:
        with pytest.raises(StreamsConflict) as caught:
            await store.append_streams([
                StreamAppend("Cart-1", _added(1), expected_version=2**31),
                StreamAppend("Cart-2", _added(1)),
            ])
        assert [(c.stream_id, c.expected, c.actual) for c in caught.value.conflicts] == [
            ("Cart-1", 2**31, 0),
        ]
        assert await store.committed_head() == START

    async def test_append_streams_again_returns_the_original_results(
        self, store: EventStore
    ) -> None:
        call = [
            StreamAppend("Cart-1", [NewEvent(e) for e in _added(2)], expected_version=NO_STREAM),
            StreamAppend("Cart-2", [NewEvent(e) for e in _added(1)], expected_version=NO_STREAM),
        ]
        first = await store.append_streams(call)
        await store.append("Cart-1", _added(1))
        assert await store.append_streams(call) == first
        assert await store.stream_version("Cart-1") == 3
        assert await store.stream_version("Cart-2") == 1

    async def test_append_streams_partly_stored_is_a_clash(self, store: EventStore) -> None:
        stored = NewEvent(ItemAdded(sku="a"))
        await store.append("Cart-1", [stored])
        with pytest.raises(DuplicateEventId) as caught:
            await store.append_streams([
                StreamAppend("Cart-1", [stored], expected_version=NO_STREAM),
                StreamAppend("Cart-2", _added(1)),
            ])
        assert caught.value.event_id == stored.event_id
        assert await store.stream_version("Cart-2") == 0

    @pytest.mark.parametrize(
        "appends",
        [
            [],
            [StreamAppend("Cart-1", _added(1)), StreamAppend("Cart-1", _added(1))],
            [StreamAppend("Cart-1", _added(1)), StreamAppend("", _added(1))],
            [StreamAppend("Cart-1", _added(1)), StreamAppend("Cart-2", [])],
            [StreamAppend("Cart-1", _added(1)), StreamAppend("Cart-2", _added(1), -1)],
            [StreamAppend("Cart-1", _added(1)), ("Cart-2", _added(1))],
            StreamAppend("Cart-1", _added(1)),
        ],
        ids=[
            "no-streams", "stream-twice", "empty-stream-id", "empty-batch",
            "negative-version", "not-a-stream-append", "not-a-list",
        ],
    )
    async def test_append_streams_refuses_bad_input_before_writing(
        self, store: EventStore, appends: Any
    ) -> None:
        with pytest.raises(InvalidAppend):
            await store.append_streams(appends)
        assert await store.committed_head() == START

    async def test_append_streams_refuses_one_event_id_in_two_streams(
        self, store: EventStore
    ) -> None:
        shared = NewEvent(ItemAdded(sku="a"))
        with pytest.raises(InvalidAppend, match=r"Cart-1.*Cart-2"):
            await store.append_streams([
                StreamAppend("Cart-1", [shared]), StreamAppend("Cart-2", [shared]),
            ])
        with pytest.raises(UnregisteredEvent):
            await store.append_streams([
                StreamAppend("Cart-1", _added(1)), StreamAppend("Cart-2", [Unregistered()]),
            ])
        assert await store.committed_head() == START

    # --- idempotency ------------------------------------------------------------------------

    async def test_reappending_same_ids_returns_original_result(self, store: EventStore) -> None:
        batch = [NewEvent(event) for event in _added(2)]
        first = await store.append("Cart-1", batch, expected_version=NO_STREAM)
        again = await store.append("Cart-1", batch, expected_version=NO_STREAM)
        assert again == first
        assert len(await store.read_stream("Cart-1")) == 2

    async def test_reappend_after_later_events_is_still_a_no_op(self, store: EventStore) -> None:
        batch = [NewEvent(event) for event in _added(1)]
        first = await store.append("Cart-1", batch, expected_version=NO_STREAM)
        await store.append("Cart-1", _added(1), expected_version=1)
        again = await store.append("Cart-1", batch, expected_version=NO_STREAM)
        assert again == first
        assert await store.stream_version("Cart-1") == 2

    async def test_partly_stored_batch_is_a_clash(self, store: EventStore) -> None:
        stored = NewEvent(ItemAdded(sku="a"))
        await store.append("Cart-1", [stored], expected_version=NO_STREAM)
        with pytest.raises(DuplicateEventId):
            await store.append("Cart-1", [stored, NewEvent(ItemAdded(sku="b"))])
        assert await store.stream_version("Cart-1") == 1

    async def test_event_id_of_another_stream_is_a_clash(self, store: EventStore) -> None:
        stored = NewEvent(ItemAdded(sku="a"))
        await store.append("Cart-1", [stored])
        with pytest.raises(DuplicateEventId):
            await store.append("Cart-2", [stored])
        assert await store.stream_version("Cart-2") == 0

    async def test_same_id_with_another_event_is_a_clash(self, store: EventStore) -> None:
        sent = NewEvent(ItemAdded(sku="a", quantity=1), metadata={"actor": "web"})
        await store.append("Cart-1", [sent])
        others = [
            (NewEvent(ItemAdded(sku="a", quantity=2), sent.event_id, {"actor": "web"}),
             "other data"),
            (NewEvent(ItemAdded(sku="a", quantity=1), sent.event_id, {"actor": "cli"}),
             "other metadata"),
            (NewEvent(ItemRemoved(sku="a"), sent.event_id, {"actor": "web"}), "ItemRemoved"),
        ]
        for other, reason in others:
            with pytest.raises(DuplicateEventId, match=reason) as caught:
                await store.append("Cart-1", [other])
            assert caught.value.event_id == sent.event_id
        (stored,) = await store.read_stream("Cart-1")
        assert store.registry.decode(stored) == sent.event
        assert stored.metadata == {"actor": "web"}

    async def test_a_retry_may_carry_other_context_metadata(self, store: EventStore) -> None:
        # correlation_id, causation_id and traceparent describe the write (a retry may run
        # in a new span): they are not part of what makes it the same event.
        sent = NewEvent(ItemAdded(sku="a"), metadata={
            "actor": "web", "correlation_id": "c-1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        })
        first = await store.append("Cart-1", [sent], expected_version=NO_STREAM)
        retry = NewEvent(sent.event, sent.event_id, {
            "actor": "web", "correlation_id": "c-2", "causation_id": "c-0",
        })
        assert await store.append("Cart-1", [retry], expected_version=NO_STREAM) == first
        (stored,) = await store.read_stream("Cart-1")
        assert stored.metadata == sent.metadata

    async def test_same_values_written_otherwise_are_the_same_event(
        self, store: EventStore
    ) -> None:
        # Dict fields keep their insertion order in JSON, and PostgreSQL's jsonb spells
        # 1e300 with 301 digits: the values compare, not the text.
        sent = NewEvent(_everything(scores={"x": 0.1, "y": 1e300}))
        first = await store.append("Everything-1", [sent])
        retry = NewEvent(_everything(scores={"y": 1e300, "x": 0.1}), sent.event_id)
        assert retry.event.model_dump_json() != sent.event.model_dump_json()
        assert await store.append("Everything-1", [retry]) == first
        assert await store.stream_version("Everything-1") == 1

    async def test_event_ids_are_kept(self, store: EventStore) -> None:
        batch = [NewEvent(event) for event in _added(2)]
        await store.append("Cart-1", batch)
        assert [e.event_id for e in await store.read_stream("Cart-1")] == [
            item.event_id for item in batch
        ]

    async def test_event_ids_are_time_ordered_uuid7(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(2))
        ids = [e.event_id for e in await store.read_stream("Cart-1")]
        assert all(i.version == 7 for i in ids)

    # --- bad input writes nothing ------------------------------------------------------------

    @pytest.mark.parametrize(
        ("stream_id", "events", "expected"),
        [
            ("", [ItemAdded(sku="a")], ANY),
            (" Cart-1", [ItemAdded(sku="a")], ANY),
            ("x" * 201, [ItemAdded(sku="a")], ANY),
            ("Cart-1", [], ANY),
            ("Cart-1", [ItemAdded(sku="a")], -1),
            ("Cart-1", [ItemAdded(sku="a")], True),
            ("Cart-1", [ItemAdded(sku="a")], "1"),
            ("Cart-1", [ItemAdded(sku="a")], 1.0),
            ("Cart-1", [{"sku": "a"}], ANY),
            ("Cart-1", ItemAdded(sku="a"), ANY),
        ],
        ids=[
            "empty-stream-id", "whitespace-stream-id", "long-stream-id", "empty-batch",
            "negative-version", "bool-version", "str-version", "float-version", "dict-event",
            "single-event-not-list",
        ],
    )
    async def test_invalid_append_is_rejected_before_writing(
        self, store: EventStore, stream_id: Any, events: Any, expected: Any
    ) -> None:
        with pytest.raises(InvalidAppend):
            await store.append(stream_id, events, expected_version=expected)
        assert await store.head() == START

    async def test_unregistered_event_class_is_rejected(self, store: EventStore) -> None:
        with pytest.raises(UnregisteredEvent, match="Unregistered"):
            await store.append("Cart-1", [ItemAdded(sku="a"), Unregistered()])
        assert await store.head() == START

    async def test_same_id_twice_in_one_batch_is_rejected(self, store: EventStore) -> None:
        twice = NewEvent(ItemAdded(sku="a"))
        with pytest.raises(InvalidAppend):
            await store.append("Cart-1", [twice, twice])
        assert await store.head() == START

    async def test_nul_characters_are_rejected_on_every_backend(
        self, store: EventStore
    ) -> None:
        with pytest.raises(InvalidAppend, match="NUL"):
            await store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="b\x00")])
        with pytest.raises(InvalidAppend, match="JSON"):
            await store.append("Cart-1", [ItemAdded(sku="a"), ItemAdded(sku="\ud800")])
        with pytest.raises(InvalidAppend, match="NUL"):
            await store.append(
                "Cart-1", [NewEvent(ItemAdded(sku="a"), metadata={"actor": "\x00"})]
            )
        assert await store.head() == START
        await store.append("Cart-1", [ItemAdded(sku="\\u0000 is just text")])
        (stored,) = await store.read_stream("Cart-1")
        assert store.registry.decode(stored) == ItemAdded(sku="\\u0000 is just text")

    async def test_metadata_must_be_json(self, store: EventStore) -> None:
        with pytest.raises(InvalidAppend):
            await store.append(
                "Cart-1", [NewEvent(ItemAdded(sku="a"), metadata={"x": {1, 2}})]
            )
        assert await store.head() == START

    @pytest.mark.parametrize(
        "number", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "minus-inf"]
    )
    async def test_non_finite_floats_are_refused_not_stored_as_null(
        self, store: EventStore, number: float
    ) -> None:
        with pytest.raises(InvalidAppend, match=r"event 1 \(Measured\).*'detail\.readings\[1\]'"):
            await store.append(
                "Lab-1", [Measured(value=1.0), Measured(detail={"readings": [1.0, number]})]
            )
        with pytest.raises(InvalidAppend, match=r"event 0 \(Measured\).*'value'"):
            await store.append("Lab-1", [Measured(value=number)])
        with pytest.raises(InvalidAppend, match=r"metadata.*'sensor\.offset'"):
            await store.append(
                "Lab-1", [NewEvent(Measured(), metadata={"sensor": {"offset": number}})]
            )
        assert await store.head() == START

    async def test_nulls_and_the_word_nan_are_stored_as_they_are(
        self, store: EventStore
    ) -> None:
        event = Measured(value=1e308, detail={"none": None, "text": "NaN"})
        await store.append("Lab-1", [NewEvent(event, metadata={"note": "Infinity"})])
        (stored,) = await store.read_stream("Lab-1")
        assert store.registry.decode(stored) == event
        assert stored.metadata == {"note": "Infinity"}

    async def test_nesting_up_to_the_depth_limit_round_trips(self, store: EventStore) -> None:
        # The event's own object is the first level.
        deepest = Measured(detail=_nested(MAX_DEPTH - 1))
        metadata = {"trail": _nested(MAX_DEPTH - 1)}
        await store.append("Lab-1", [NewEvent(deepest, metadata=metadata)])
        for recorded in [*await store.read_stream("Lab-1"), *await store.read_all()]:
            assert recorded.corrupt is None
            assert store.registry.decode(recorded) == deepest
            assert recorded.metadata == metadata

    @pytest.mark.parametrize("levels", [MAX_DEPTH, 3000])
    async def test_deeper_nesting_is_refused(self, store: EventStore, levels: int) -> None:
        with pytest.raises(InvalidAppend, match=rf"event 1 \(Measured\).*{MAX_DEPTH} levels"):
            await store.append("Lab-1", [Measured(), Measured(detail=_nested(levels))])
        with pytest.raises(InvalidAppend, match=rf"metadata.*{MAX_DEPTH} levels"):
            await store.append(
                "Lab-1", [NewEvent(Measured(), metadata={"trail": _nested(levels)})]
            )
        assert await store.head() == START

    # --- round trips -------------------------------------------------------------------------

    async def test_every_field_type_round_trips_without_loss(self, store: EventStore) -> None:
        event = _everything(scores={"x": 0.1, "y": 1e300})
        await store.append("Everything-1", [event])
        (recorded,) = await store.read_stream("Everything-1")
        decoded = store.registry.decode(recorded)
        assert decoded == event
        assert isinstance(decoded, EverythingHappened)
        assert decoded.at.utcoffset() == timedelta(hours=2)

    async def test_metadata_round_trips(self, store: EventStore) -> None:
        metadata = {
            "correlation_id": str(uuid.uuid4()),
            "causation_id": str(uuid.uuid4()),
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tenant": "acme",
            "nested": {"a": [1, 2]},
        }
        await store.append("Cart-1", [NewEvent(ItemAdded(sku="a"), metadata=metadata)])
        (recorded,) = await store.read_stream("Cart-1")
        assert recorded.metadata == metadata
        (logged,) = await store.read_all()
        assert logged.metadata == metadata

    async def test_envelope_facts(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a")])
        (recorded,) = await store.read_stream("Cart-1")
        assert recorded.event_type == "ItemAdded"
        assert recorded.schema_version == 1
        assert recorded.data == {"sku": "a", "quantity": 1}
        assert abs(recorded.recorded_at - datetime.now(UTC)) < timedelta(minutes=5)

    # --- reading a stream --------------------------------------------------------------------

    async def test_read_stream_ranges(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(5))

        async def versions(**kwargs: Any) -> list[int]:
            return [e.stream_version for e in await store.read_stream("Cart-1", **kwargs)]

        assert await versions() == [1, 2, 3, 4, 5]
        assert await versions(from_version=3) == [3, 4, 5]
        assert await versions(to_version=2) == [1, 2]
        assert await versions(from_version=2, to_version=4) == [2, 3, 4]
        assert await versions(limit=2) == [1, 2]
        assert await versions(from_version=2, limit=2) == [2, 3]
        assert await versions(backwards=True) == [5, 4, 3, 2, 1]
        assert await versions(backwards=True, from_version=3) == [3, 2, 1]
        assert await versions(backwards=True, limit=2) == [5, 4]
        assert await versions(backwards=True, from_version=4, to_version=2) == [4, 3, 2]
        assert await versions(from_version=6) == []

    async def test_read_missing_stream_is_empty(self, store: EventStore) -> None:
        assert await store.read_stream("Cart-404") == []

    async def test_read_stream_as_of_time(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(2))
        (_, second) = await store.read_stream("Cart-1")
        before = second.recorded_at - timedelta(days=1)
        assert await store.read_stream("Cart-1", as_of=before) == []
        after = second.recorded_at
        assert len(await store.read_stream("Cart-1", as_of=after)) == 2

    # --- read arguments: every backend refuses and answers alike -----------------------------

    @pytest.mark.parametrize(
        "arguments",
        [
            {"limit": -1}, {"limit": 1.5}, {"limit": True}, {"from_version": -1},
            {"to_version": -1}, {"from_version": "1"}, {"backwards": "yes"},
            {"as_of": datetime(2026, 1, 1)}, {"as_of": "2026-01-01"},
        ],
        ids=[
            "negative-limit", "float-limit", "bool-limit", "negative-from", "negative-to",
            "str-from", "str-backwards", "naive-as-of", "str-as-of",
        ],
    )
    async def test_invalid_stream_reads_are_refused(
        self, store: EventStore, arguments: dict[str, Any]
    ) -> None:
        await store.append("Cart-1", _added(2))
        with pytest.raises(InvalidRead):
            await store.read_stream("Cart-1", **arguments)

    @pytest.mark.parametrize("stream_id", ["", " Cart-1", "x" * 201, 5])
    async def test_invalid_stream_ids_in_reads_are_refused(
        self, store: EventStore, stream_id: Any
    ) -> None:
        with pytest.raises(InvalidRead):
            await store.read_stream(stream_id)
        with pytest.raises(InvalidRead):
            await store.stream_version(stream_id)

    @pytest.mark.parametrize(
        "arguments",
        [
            {"limit": -1}, {"limit": None}, {"limit": 2.0}, {"after": (-1, 0)},
            {"after": (0, -1)}, {"after": (0,)}, {"after": 5}, {"after": (2**63, 0)},
            {"event_types": "ItemAdded"}, {"event_types": [1]},
        ],
        ids=[
            "negative-limit", "none-limit", "float-limit", "negative-transaction",
            "negative-position", "short-after", "int-after", "huge-after", "str-types",
            "int-types",
        ],
    )
    async def test_invalid_log_reads_are_refused(
        self, store: EventStore, arguments: dict[str, Any]
    ) -> None:
        await store.append("Cart-1", _added(2))
        with pytest.raises(InvalidRead):
            await store.read_all(**arguments)

    async def test_invalid_list_limits_are_refused(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1))
        for limit in (-1, None, 1.0):
            with pytest.raises(InvalidRead):
                await store.list_streams(limit=limit)  # type: ignore[arg-type]

    async def test_reads_of_nothing_and_of_everything_agree(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(3))

        async def versions(**kwargs: Any) -> list[int]:
            return [e.stream_version for e in await store.read_stream("Cart-1", **kwargs)]

        assert await versions(limit=0) == []
        assert await versions(limit=2**70) == [1, 2, 3]
        assert await versions(from_version=0) == [1, 2, 3]
        assert await versions(from_version=2**40) == []
        assert await versions(to_version=2**40) == [1, 2, 3]
        assert await versions(backwards=True, from_version=2**40) == [3, 2, 1]
        assert await versions(backwards=True, from_version=0) == []
        assert await versions(from_version=3, to_version=2) == []
        assert await versions(backwards=True, from_version=2, to_version=3) == []
        assert await store.read_all(limit=0) == []
        assert await store.read_all(event_types=[]) == []
        assert len(await store.read_all(limit=2**70)) == 3
        assert await store.read_all(after=GlobalPosition(2**63 - 1, 2**63 - 1)) == []
        assert await store.list_streams(limit=0) == []
        assert len(await store.list_streams(limit=2**70)) == 1

    # --- the global log ----------------------------------------------------------------------

    async def test_read_all_in_order_and_in_batches(self, store: EventStore) -> None:
        for n in range(1, 6):
            await store.append(f"Cart-{n}", _added(n))
        whole = await _read_whole_log(store, batch=4)
        assert len(whole) == 15
        positions = [e.global_position for e in whole]
        assert positions == sorted(positions)
        assert len(set(positions)) == 15
        assert [e.stream_id for e in whole] == [
            f"Cart-{n}" for n in range(1, 6) for _ in range(n)
        ]
        assert await _read_whole_log(store, batch=1000) == whole

    async def test_read_all_after_a_position(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(3))
        first, second, third = await store.read_all()
        assert await store.read_all(after=first.global_position) == [second, third]
        assert await store.read_all(after=third.global_position) == []
        assert await store.read_all(after=first.global_position, limit=1) == [second]

    async def test_read_all_filters_event_types(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
        await store.append("Cart-2", [ItemRemoved(sku="b")])
        removed = await store.read_all(event_types={"ItemRemoved"})
        assert [(e.stream_id, e.event_type) for e in removed] == [
            ("Cart-1", "ItemRemoved"), ("Cart-2", "ItemRemoved"),
        ]

    async def test_read_all_of_one_partition(self, store: EventStore) -> None:
        for n in range(12):
            await store.append(f"Cart-{n}", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
        whole = await _read_whole_log(store)
        for index in range(3):
            ours = [r for r in whole if partition_of(r.stream_id, 3) == index]
            assert await store.read_all(partition=(index, 3), limit=1000) == ours
            # In batches: a batch is full of the partition's events, wherever they lie.
            first = await store.read_all(partition=(index, 3), limit=3)
            assert first == ours[:3]
            rest = await store.read_all(after=first[-1].global_position, partition=(index, 3))
            assert rest == ours[3:]
            removed = await store.read_all(partition=(index, 3), event_types={"ItemRemoved"})
            assert removed == [r for r in ours if r.event_type == "ItemRemoved"]
        with pytest.raises(InvalidRead, match="partition"):
            await store.read_all(partition=(3, 3))

    async def test_head(self, store: EventStore) -> None:
        assert await store.head() == START
        await store.append("Cart-1", _added(2))
        result = await store.append("Cart-2", _added(1))
        assert await store.head() == result.global_position
        assert isinstance(await store.head(), GlobalPosition)

    async def test_committed_head(self, store: EventStore) -> None:
        assert await store.committed_head() == START
        result = await store.append("Cart-1", _added(2))
        assert await store.committed_head() == result.global_position
        assert await store.committed_head() >= await store.head()

    # --- streams and categories --------------------------------------------------------------

    async def test_list_streams_by_category(self, store: EventStore) -> None:
        for stream_id in ["Cart-2", "Cart-1", "Order-1", "Cart-3", "Cartography-1"]:
            await store.append(stream_id, _added(1))
        await store.append("Cart-1", _added(1))
        carts = await store.list_streams(category="Cart")
        assert [(s.stream_id, s.version) for s in carts] == [
            ("Cart-1", 2), ("Cart-2", 1), ("Cart-3", 1),
        ]
        assert all(s.category == "Cart" for s in carts)
        everything = await store.list_streams()
        assert [s.stream_id for s in everything] == sorted(
            ["Cart-1", "Cart-2", "Cart-3", "Cartography-1", "Order-1"]
        )
        page = await store.list_streams(category="Cart", after="Cart-1", limit=1)
        assert [s.stream_id for s in page] == ["Cart-2"]

    # --- waiting for new events --------------------------------------------------------------

    async def test_wait_for_events_times_out_when_nothing_comes(self, store: EventStore) -> None:
        assert await store.wait_for_events(START, timeout=0.05) is False

    async def test_wait_for_events_returns_at_once_when_behind(self, store: EventStore) -> None:
        await store.append("Cart-1", _added(1))
        assert await store.wait_for_events(START, timeout=5) is True

    async def test_wait_for_events_wakes_on_append(self, store: EventStore) -> None:
        head = await store.head()
        waiter = asyncio.create_task(store.wait_for_events(head, timeout=10))
        await asyncio.sleep(0)
        await store.append("Cart-1", _added(1))
        assert await asyncio.wait_for(waiter, 10) is True

    # --- upcasting on every read path --------------------------------------------------------

    async def test_reads_apply_the_registrys_upcaster(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a", quantity=2)])
        original = store.registry
        store.registry = EventRegistry([ItemAddedV2, ItemDropped], upcaster=_AddSource())
        try:
            expected = ItemAddedV2(sku="a", quantity=2, source="legacy")
            (from_stream,) = await store.read_stream("Cart-1")
            (from_log,) = await store.read_all()
            for recorded in (from_stream, from_log):
                assert recorded.schema_version == 2
                assert store.registry.decode(recorded) == expected
        finally:
            store.registry = original

    async def test_type_filtered_reads_find_renamed_events(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a"), ItemRemoved(sku="a")])
        original = store.registry
        store.registry = EventRegistry([ItemAddedV2, ItemDropped], upcaster=_AddSource())
        try:
            dropped = await store.read_all(event_types={"ItemDropped"})
            assert [(e.event_type, e.stream_version) for e in dropped] == [("ItemDropped", 2)]
        finally:
            store.registry = original

    async def test_the_typed_stream_reads_as_read_stream_and_decode(
        self, store: EventStore
    ) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a", quantity=2), ItemRemoved(sku="a")])
        await store.append("Cart-1", [ItemAdded(sku="b", quantity=3)])
        original = store.registry
        store.registry = EventRegistry([ItemAddedV2, ItemDropped], upcaster=_AddSource())
        try:
            for first, last in ((None, None), (2, None), (None, 2), (3, 3)):
                records = await store.read_stream("Cart-1", from_version=first, to_version=last)
                typed = await store.read_typed_stream(
                    "Cart-1", from_version=first, to_version=last
                )
                assert typed.version == records[-1].stream_version
                assert list(typed) == [store.registry.decode(record) for record in records]
            empty = await store.read_typed_stream("Cart-9")
            assert (empty.version, list(empty)) == (0, [])
            store.registry = EventRegistry([ItemDropped], upcaster=_AddSource())
            skipping = await store.read_typed_stream("Cart-1", skip_unknown=True)
            assert (skipping.version, list(skipping)) == (3, [ItemDropped(sku="a")])
        finally:
            store.registry = original

    # --- looking events up: by id, by correlation; the horizon -------------------------------

    async def test_read_event_finds_an_event_wherever_it_lies(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a")])
        await store.append("Cart-2", [ItemAdded(sku="b"), ItemRemoved(sku="b")])
        (removed,) = await store.read_stream("Cart-2", from_version=2)
        assert await store.read_event(removed.event_id) == [removed]
        assert await store.read_event(uuid.uuid4()) == []

    async def test_read_event_applies_the_registrys_upcaster(self, store: EventStore) -> None:
        await store.append("Cart-1", [ItemAdded(sku="a", quantity=2)])
        (stored,) = await store.read_stream("Cart-1")
        original = store.registry
        store.registry = EventRegistry([ItemAddedV2, ItemDropped], upcaster=_AddSource())
        try:
            (upcast,) = await store.read_event(stored.event_id)
            assert upcast.schema_version == 2
            assert store.registry.decode(upcast) == ItemAddedV2(
                sku="a", quantity=2, source="legacy"
            )
        finally:
            store.registry = original

    async def test_read_correlation_in_log_order(self, store: EventStore) -> None:
        root = uuid.uuid4()
        await store.append("Cart-1", [NewEvent(ItemAdded(sku="a"), event_id=root)])
        await store.append("Cart-2", [
            NewEvent(ItemAdded(sku="b"), metadata={"correlation_id": str(root)}),
            NewEvent(ItemAdded(sku="x"), metadata={"correlation_id": "another"}),
        ])
        await store.append("Cart-1", [
            NewEvent(ItemRemoved(sku="a"), metadata={"correlation_id": str(root)}),
        ])
        await store.append("Cart-3", [
            NewEvent(ItemAdded(sku="c"), metadata={"correlation_id": "request-7"}),
        ])
        found = await store.read_correlation(str(root))
        assert [(r.stream_id, r.stream_version) for r in found] == [
            ("Cart-1", 1), ("Cart-2", 1), ("Cart-1", 2),
        ]
        assert found[0].event_id == root
        assert [r.global_position for r in found] == sorted(r.global_position for r in found)
        (request,) = await store.read_correlation("request-7")
        assert request.data == {"sku": "c", "quantity": 1}
        assert await store.read_correlation("nobody") == []

    async def test_horizon_holders_are_sessions(self, store: EventStore) -> None:
        # Which sessions hold a PostgreSQL server's horizon depends on the whole cluster;
        # every store answers with sessions (none where readers see every commit).
        await store.append("Cart-1", [ItemAdded(sku="a")])
        holders = await store.horizon_holders()
        assert all(isinstance(holder, HorizonHolder) for holder in holders)

    # --- importing recorded events (copies and restores) ----------------------------------

    async def test_import_keeps_the_envelope_and_takes_the_stores_positions(
        self, store: EventStore
    ) -> None:
        appended = await store.append("Cart-1", _added(2))
        recorded_at = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        imported = [
            _recorded("Cart-1", 3, data={"sku": "x", "quantity": 7}),
            _recorded(
                "Legacy-9", 1, event_type="LegacyThing", schema_version=3,
                data={"ü": ["a", {"b": None}], "n": 1.5}, recorded_at=recorded_at,
                metadata={"correlation_id": "c-1", "actor": "ana"},
            ),
        ]
        await store.import_events(imported)
        await _until_visible(store)
        log = await _read_whole_log(store)
        assert [(r.stream_id, r.stream_version) for r in log] == [
            ("Cart-1", 1), ("Cart-1", 2), ("Cart-1", 3), ("Legacy-9", 1),
        ]
        assert log[2].global_position > appended.global_position
        assert log[3].global_position > log[2].global_position
        for stored, sent in zip(log[2:], imported, strict=True):
            assert (stored.event_id, stored.event_type, stored.schema_version, stored.data,
                    stored.metadata, stored.recorded_at) == (
                sent.event_id, sent.event_type, sent.schema_version, sent.data,
                sent.metadata, sent.recorded_at,
            )
        assert await store.stream_version("Legacy-9") == 1
        assert "Legacy-9" in {info.stream_id for info in await store.list_streams()}
        assert (await store.read_event(imported[1].event_id))[0].metadata["actor"] == "ana"
        after = await store.append("Cart-1", _added(1), expected_version=3)
        assert after.global_position > log[3].global_position

    async def test_import_refuses_a_version_that_does_not_follow_on(
        self, store: EventStore
    ) -> None:
        await store.append("Cart-1", _added(2))
        batch = [_recorded("Cart-2", 1), _recorded("Cart-1", 4)]
        with pytest.raises(ImportRefused) as caught:
            await store.import_events(batch)
        assert caught.value.event_id == batch[1].event_id
        assert "at version 2" in str(caught.value)
        with pytest.raises(ImportRefused):
            await store.import_events([_recorded("Cart-3", 1), _recorded("Cart-3", 3)])
        assert len(await _read_whole_log(store)) == 2
        assert await store.stream_version("Cart-2") == 0

    async def test_import_refuses_a_stored_event_id(self, store: EventStore) -> None:
        first = _recorded("Cart-1", 1)
        await store.import_events([first])
        again = dataclasses.replace(first, stream_id="Cart-2")
        with pytest.raises(ImportRefused) as caught:
            await store.import_events([_recorded("Cart-3", 1), again])
        assert caught.value.event_id == first.event_id
        assert "stored already" in str(caught.value)
        await _until_visible(store)
        assert [r.stream_id for r in await _read_whole_log(store)] == ["Cart-1"]

    async def test_import_refuses_a_damaged_record_and_takes_an_empty_batch(
        self, store: EventStore
    ) -> None:
        damaged = dataclasses.replace(_recorded("Cart-1", 1), corrupt="not JSON")
        with pytest.raises(ImportRefused, match="damaged"):
            await store.import_events([damaged])
        await store.import_events([])
        assert await store.head() == START



def timezone_plus(hours: int) -> Any:
    """A fixed UTC offset."""
    from datetime import timezone

    return timezone(timedelta(hours=hours))


class KeyStoreConformance:
    """The behavioural suite of a ``KeyStore`` (subjects' keys for personal data).

    Subclass it with a ``keys`` fixture yielding an empty key store.
    """

    async def test_a_subjects_key_is_made_once(self, keys: KeyStore) -> None:
        assert await keys.find("s1") is None
        made = await keys.create("s1")
        assert made.secret is not None and len(made.secret) == 32
        assert await keys.create("s1") == made
        assert await keys.find("s1") == made
        assert (await keys.create("s2")).key_id != made.key_id

    async def test_makers_of_one_key_at_once_all_get_the_winner(self, keys: KeyStore) -> None:
        made = await asyncio.gather(*(keys.create("s1") for _ in range(8)))
        assert len({key.key_id for key in made}) == 1
        assert len({key.secret for key in made}) == 1

    async def test_secrets_are_given_by_key_id_and_destroyed_ones_left_out(
        self, keys: KeyStore
    ) -> None:
        one, two = await keys.create("s1"), await keys.create("s2")
        assert await keys.secrets([one.key_id, two.key_id, "no-such-key"]) == {
            one.key_id: one.secret, two.key_id: two.secret,
        }
        await keys.destroy("s1")
        assert await keys.secrets([one.key_id, two.key_id]) == {two.key_id: two.secret}

    async def test_a_destroyed_key_is_gone_for_good(self, keys: KeyStore) -> None:
        made = await keys.create("s1")
        await keys.destroy("s1")
        await keys.destroy("s1")  # twice is harmless
        assert await keys.find("s1") == SubjectKey("s1", made.key_id, None)
        assert await keys.create("s1") == SubjectKey("s1", made.key_id, None)

    async def test_a_subject_never_seen_can_be_forgotten_and_gets_no_key(
        self, keys: KeyStore
    ) -> None:
        await keys.destroy("s1")
        found = await keys.find("s1")
        assert found is not None and found.secret is None
        assert (await keys.create("s1")).secret is None

    async def test_keys_are_listed_in_pages_by_subject_forgotten_ones_too(
        self, keys: KeyStore
    ) -> None:
        made = {subject: await keys.create(subject) for subject in ("c", "a", "", "b")}
        await keys.destroy("b")
        await keys.destroy("d")
        listed = [*await keys.page(limit=2), *await keys.page(after="a", limit=2)]
        assert listed == [
            made[""], made["a"], SubjectKey("b", made["b"].key_id, None), made["c"],
        ]
        rest = await keys.page(after="c")
        assert len(rest) == 1 and rest[0].subject == "d" and rest[0].secret is None
        assert await keys.page(after="d") == []

    async def test_imported_keys_keep_their_ids_and_secrets(self, keys: KeyStore) -> None:
        live = SubjectKey("s1", new_key_id(), new_secret())
        forgotten = SubjectKey("s2", new_key_id(), None)
        await keys.import_keys([live, forgotten])
        await keys.import_keys([live, forgotten])  # again: no change
        await keys.import_keys([])
        assert await keys.page() == [live, forgotten]
        assert await keys.create("s1") == live
        assert (await keys.create("s2")).secret is None
        assert await keys.secrets([live.key_id, forgotten.key_id]) == {live.key_id: live.secret}

    async def test_an_imported_forgotten_key_forgets_and_a_forgotten_one_stays_so(
        self, keys: KeyStore
    ) -> None:
        one, two = await keys.create("s1"), await keys.create("s2")
        await keys.destroy("s2")
        await keys.import_keys([SubjectKey("s1", one.key_id, None), two])
        assert await keys.page() == [
            SubjectKey("s1", one.key_id, None), SubjectKey("s2", two.key_id, None),
        ]

    async def test_an_imported_key_never_replaces_another_key_of_its_subject(
        self, keys: KeyStore
    ) -> None:
        held = await keys.create("s1")
        await keys.import_keys([SubjectKey("s1", new_key_id(), new_secret())])
        await keys.import_keys([SubjectKey("s1", new_key_id(), None)])
        assert await keys.page() == [held]



def _recorded(
    stream_id: str,
    version: int,
    *,
    event_type: str = "ItemAdded",
    schema_version: int = 1,
    data: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    recorded_at: datetime | None = None,
) -> RecordedEvent:
    """A recorded event as another store would hand it to ``import_events``."""
    return RecordedEvent(
        event_id=uuid.uuid4(), stream_id=stream_id, stream_version=version,
        transaction_id=999_999, position=999_999, event_type=event_type,
        schema_version=schema_version, data=data if data is not None else {"sku": "a"},
        metadata=metadata or {}, recorded_at=recorded_at or datetime.now(UTC),
    )


async def _until_visible(store: EventStore) -> None:
    """Wait until readers of the log see every committed event (PostgreSQL's horizon)."""
    async with asyncio.timeout(30):
        while (head := await store.head()) < await store.committed_head():
            await store.wait_for_events(head, timeout=0.5)
