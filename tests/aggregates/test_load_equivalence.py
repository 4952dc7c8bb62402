"""A load gives what folding the stored events by hand gives, whatever the stream holds.

The load path is tuned for speed (events folded as they are decoded, records built through
slot setters, the upcaster's copy made in C). These properties hold it to a reference
written without any of that: stored events of an old version (upcast by a step that
mutates its argument, nested lists too), splits, current events and data that no longer
validates, appended by writers of each era; with and without a snapshot. The load equals
the reference fold, or raises the same typed error naming the first bad event, and the
stored data is never changed by a load.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from aggregate_backends import migrated_sqlite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold.aggregates import Aggregate, Repository, applies
from eventfold.eventstore import Event, EventDecodeError, EventRegistry, EventStore, connect
from eventfold.snapshots import Snapshot, open_snapshots
from eventfold.upcasters import Upcasters


class TickV1(Event):
    """Version 1: no unit (all ticks were in celsius)."""

    event_type = "Tick"
    schema_version = 1

    step: int
    tags: list[str]


class Tick(Event):
    """Version 2: the unit is explicit."""

    schema_version = 2

    step: int
    unit: str
    tags: list[str]


class TickOfText(Event):
    """A writer whose Tick took text steps: its data does not validate as ``Tick``."""

    event_type = "Tick"
    schema_version = 2

    step: str
    unit: str
    tags: list[str]


class PairV1(Event):
    """Two ticks in one event, split into two ``Tick`` on reading."""

    event_type = "Pair"
    schema_version = 1

    first: int
    second: int


def _reader_registry() -> EventRegistry:
    upcasters = Upcasters()

    @upcasters.register("Tick", 1)
    def add_unit(data: dict[str, Any]) -> dict[str, Any]:
        data["unit"] = "celsius"  # mutates its argument, nested list too: the chain copies
        data["tags"].append("v1")
        return data

    @upcasters.split("Pair", 1, into=[("Tick", 2)])
    def split_pair(data: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
        return [
            ("Tick", 2, {"step": data["first"], "unit": "pair", "tags": []}),
            ("Tick", 2, {"step": data["second"], "unit": "pair", "tags": []}),
        ]

    registry = EventRegistry([Tick], upcaster=upcasters)
    upcasters.check(registry)
    return registry


class Meter(Aggregate):
    """Folds ticks into a total, the units seen and the tags seen."""

    total: int = 0
    units: list[str] = []  # noqa: RUF012 (state defaults are copied per aggregate)
    tags: list[str] = []  # noqa: RUF012

    @applies(Tick)
    def _ticked(self, event: Tick) -> None:
        self.total += event.step
        self.units.append(event.unit)
        self.tags.extend(event.tags)


_tags = st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)
_steps = st.integers(min_value=-1000, max_value=1000)
_stored = st.one_of(
    st.tuples(st.just("v1"), _steps, _tags),
    st.tuples(st.just("v2"), _steps, _tags),
    st.tuples(st.just("pair"), _steps, _steps),
    st.tuples(st.just("text"), st.sampled_from(["x", "1.5", ""])),
)
_plans = st.lists(_stored, min_size=1, max_size=12)


def _written(op: tuple[Any, ...]) -> tuple[str, Event]:
    """Which writer appends ``op`` and the event it appends."""
    kind = op[0]
    if kind == "v1":
        return "old", TickV1(step=op[1], tags=list(op[2]))
    if kind == "v2":
        return "new", Tick(step=op[1], unit="kelvin", tags=list(op[2]))
    if kind == "pair":
        return "old", PairV1(first=op[1], second=op[2])
    return "text", TickOfText(step=op[1], unit="kelvin", tags=[])


def _read_as(op: tuple[Any, ...]) -> list[Tick] | None:
    """The reference: the current events a reader must see for ``op`` (None: invalid)."""
    kind = op[0]
    if kind == "v1":
        return [Tick(step=op[1], unit="celsius", tags=[*op[2], "v1"])]
    if kind == "v2":
        return [Tick(step=op[1], unit="kelvin", tags=list(op[2]))]
    if kind == "pair":
        return [Tick(step=op[1], unit="pair", tags=[]), Tick(step=op[2], unit="pair", tags=[])]
    return None


def _expected(
    meter_id: str, plan: list[tuple[Any, ...]], upto: int
) -> Meter | int:
    """The reference fold of the first ``upto`` stored events, or the stream version of
    the first one that cannot be read."""
    events: list[Tick] = []
    for version, op in enumerate(plan[:upto], start=1):
        read = _read_as(op)
        if read is None:
            return version
        events.extend(read)
    meter = Meter.from_events(meter_id, events)
    meter.version = upto
    return meter


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The SQL backends (a memory store cannot be shared by writers of different eras);
    the examples use fresh stream ids."""
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path, "loads.db")
    pg_url: str = request.getfixturevalue("pg_url")
    return pg_url


async def _write(url: str, stream_id: str, plan: list[tuple[Any, ...]]) -> None:
    writers = {
        "old": EventRegistry([TickV1, PairV1]),
        "new": EventRegistry([Tick]),
        "text": EventRegistry([TickOfText]),
    }
    stores = {name: await connect(url, registry) for name, registry in writers.items()}
    try:
        for version, op in enumerate(plan):
            writer, event = _written(op)
            await stores[writer].append(stream_id, [event], expected_version=version)
    finally:
        for store in stores.values():
            await store.close()


async def _load(repo: Repository, meter_id: str) -> Meter | int:
    try:
        return await repo.get(Meter, meter_id)
    except EventDecodeError as exc:
        assert exc.event_type == "Tick", exc
        assert exc.stream_version is not None
        return exc.stream_version


def _same(loaded: Meter | int, expected: Meter | int) -> None:
    if isinstance(expected, int) or isinstance(loaded, int):
        assert loaded == expected, "the load and the reference disagree on the bad event"
        return
    assert (vars(loaded), loaded.version) == (vars(expected), expected.version)


async def _stored_data(url: str, stream_id: str) -> list[dict[str, Any]]:
    """The stored JSON as written (a store without upcasters reads it as it is)."""
    store: EventStore = await connect(url, EventRegistry())
    try:
        return [record.data for record in await store.read_stream(stream_id)]
    finally:
        await store.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=_plans, snapshot_at=st.integers(min_value=1, max_value=12))
def test_a_load_equals_the_reference_fold_or_names_the_same_bad_event(
    url: str, plan: list[tuple[Any, ...]], snapshot_at: int
) -> None:
    async def check() -> None:
        meter_id = uuid.uuid4().hex
        stream_id = Meter.stream_id_for(meter_id)
        await _write(url, stream_id, plan)
        written = await _stored_data(url, stream_id)
        expected = _expected(meter_id, plan, len(plan))

        async with connect(url, _reader_registry()) as reader:
            repo = Repository(reader)
            _same(await _load(repo, meter_id), expected)
            _same(await _load(repo, meter_id), expected)  # nothing leaked from the first

            at = min(snapshot_at, len(plan))
            head = _expected(meter_id, plan, at)
            if isinstance(head, Meter):
                snapshots = open_snapshots(url)
                try:
                    await snapshots.save(
                        Snapshot(stream_id, at, Meter.state_version, head.snapshot_state())
                    )
                    from_snapshot = Repository(reader, snapshots=snapshots)
                    _same(await _load(from_snapshot, meter_id), expected)
                finally:
                    await snapshots.close()

        assert await _stored_data(url, stream_id) == written, "a load changed stored data"

    asyncio.run(check())


def test_the_plans_reach_every_kind_of_stored_event() -> None:
    # Guards the property against vacuity: each kind reads as the reference says.
    plan: list[tuple[Any, ...]] = [("v1", 2, ["a"]), ("pair", 3, 4), ("v2", 5, []), ("text", "x")]
    assert [_read_as(op) is None for op in plan] == [False, False, False, True]
    folded = _expected("m", plan, 3)
    assert isinstance(folded, Meter)
    assert (folded.total, folded.units, folded.tags, folded.version) == (
        14, ["celsius", "pair", "pair", "kelvin"], ["a", "v1"], 3
    )
    assert _expected("m", plan, 4) == 4


async def _damage(url: str, stream_id: str, version: int, data: str) -> None:
    """Overwrite one stored row's data with ``data`` (JSON a reader cannot use)."""
    if url.startswith("sqlite"):
        async with aiosqlite.connect(url.removeprefix("sqlite:///")) as db:
            await db.execute(
                "UPDATE eventfold_events SET data = ? WHERE stream_id = ? AND stream_version = ?",
                (data, stream_id, version),
            )
            await db.commit()
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE eventfold_events SET data = $1::jsonb "
            "WHERE stream_id = $2 AND stream_version = $3",
            data, stream_id, version,
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', '{"step": 1}'])
async def test_a_current_row_that_cannot_be_read_fails_the_load_as_decode_does(
    url: str, data: str
) -> None:
    # Current rows are validated straight from their JSON text; one that does not validate
    # (not an object, or missing fields) raises the ordinary decode's error, word for word.
    meter_id = uuid.uuid4().hex
    stream_id = Meter.stream_id_for(meter_id)
    await _write(url, stream_id, [("v2", 1, []), ("v2", 2, ["a"]), ("v2", 3, [])])
    await _damage(url, stream_id, 2, data)
    async with connect(url, _reader_registry()) as reader:
        with pytest.raises(EventDecodeError) as by_hand:
            for record in await reader.read_stream(stream_id):
                reader.registry.decode(record)
        with pytest.raises(EventDecodeError) as loaded:
            await Repository(reader).get(Meter, meter_id)
    assert str(loaded.value) == str(by_hand.value)
    assert (loaded.value.stream_version, loaded.value.corrupt) == (
        2, by_hand.value.corrupt
    )
