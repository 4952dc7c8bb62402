"""Read models in a database of their own (``App(read_models=URL)``): the runner reads the
store and writes read models, checkpoints, parked events, leases and process state in the
other database, for each pairing of PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from projection_support import Env, Inventory, ItemAdded, ItemRemoved, Unrelated
from pydantic import BaseModel
from transaction_probe import open_transactions

from eventfold import (
    Aggregate,
    App,
    EventStore,
    ProcessContext,
    ProcessManager,
    Relay,
    Runner,
    Running,
    StoreUnavailable,
    applies,
    on,
    on_timeout,
)
from eventfold.errors import ReadModelsNotMigrated, ReadModelsUnavailable
from eventfold.eventstore import Event
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.urls import same_database
from eventfold.messaging import Message
from eventfold.processes import DeadlinePoller
from eventfold.projections import list_parked, rebuild, retry_parked, status
from eventfold.projections.database import Database
from eventfold.testing.postgres import create_database, drop_database


class Restocked(Event):
    """What the shelf aggregate records when the process manager restocks it."""

    sku: str


class Shelf(Aggregate):
    """A shelf the restocking process sends commands to."""

    restocks: int = 0

    def restock(self, sku: str) -> None:
        """Record a restock."""
        self.record(Restocked(sku=sku))

    @applies(Restocked)
    def _restocked(self, event: Restocked) -> None:
        self.restocks += 1


class RecountDue(BaseModel):
    """The restocking's timeout: count the shelf again a day later."""

    sku: str


class Restocking(ProcessManager[dict[str, Any]]):
    """Restocks the shelf of each SKU added (a command to the store per event), and again
    when the recount is due."""

    name = "restocking"
    key = "sku"

    @on(ItemAdded, start=True)
    async def added(self, event: ItemAdded, ctx: ProcessContext[dict[str, Any]]) -> None:
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        await ctx.send(Shelf, f"Shelf-{event.sku}", lambda shelf: shelf.restock(event.sku))
        ctx.schedule(RecountDue(sku=event.sku), after=timedelta(days=1), name="recount")

    @on_timeout(RecountDue)
    async def recount(self, message: RecountDue, ctx: ProcessContext[dict[str, Any]]) -> None:
        await ctx.send(Shelf, f"Shelf-{message.sku}", lambda shelf: shelf.restock(message.sku))


def make_app(*projections: Inventory, manager: Restocking | None = None) -> App:
    return App(
        events=[ItemAdded, ItemRemoved, Unrelated, Restocked],
        aggregates=[Shelf],
        projections=projections or [Inventory()],
        subscribers=[manager] if manager else [],
    )


@dataclass
class Apart:
    """A store's URL and the URL of the read models' own database."""

    kind: str
    store_url: str
    read_models_url: str


PAIRS = ["postgres+postgres", "postgres+sqlite", "sqlite+postgres", "sqlite+sqlite"]


@pytest.fixture(params=PAIRS)
async def apart(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Apart]:
    """A migrated store and a migrated read-model database, each of its own."""
    store_kind, models_kind = request.param.split("+")
    made: list[str] = []

    async def database(kind: str, file: str) -> str:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / file}"
        else:
            url = await create_database(request.getfixturevalue("pg_server_url"))
            made.append(url)
        await migrate(url)
        return url

    try:
        yield Apart(
            request.param, await database(store_kind, "store.db"),
            await database(models_kind, "read_models.db"),
        )
    finally:
        for url in made:
            await drop_database(url)


async def tables_of(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def count(url: str, table: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one())
    finally:
        await engine.dispose()


async def stock(running: Running) -> dict[str, int]:
    async with Database(running.engine).reading() as conn:
        table = Inventory.stock
        rows = await conn.execute(sa.select(table.c.stream_id, table.c.quantity))
        return {stream_id: quantity for stream_id, quantity in rows}


async def test_the_runner_reads_the_store_and_writes_only_the_read_model_database(
    apart: Apart,
) -> None:
    app = make_app()
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        assert running.read_models_url == apart.read_models_url
        await running.store.append("Cart-1", [ItemAdded(sku="tea", quantity=2)])
        last = await running.store.append("Cart-2", [ItemAdded(sku="cup"), Unrelated()])
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(last.global_position)
            assert await count(apart.read_models_url, "eventfold_leases") == 1
            assert await count(apart.store_url, "eventfold_leases") == 0
        assert await stock(running) == {"Cart-1": 2, "Cart-2": 1}

    assert "test_inventory_stock" in await tables_of(apart.read_models_url)
    assert "test_inventory_stock" not in await tables_of(apart.store_url)
    assert await count(apart.read_models_url, "eventfold_checkpoints") == 1
    assert await count(apart.store_url, "eventfold_checkpoints") == 0
    assert await count(apart.read_models_url, "eventfold_events") == 0  # only the schema


async def test_status_takes_the_head_from_the_store_and_the_checkpoint_from_the_read_models(
    apart: Apart,
) -> None:
    app = make_app()
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        first = await running.store.append("Cart-1", [ItemAdded(sku="tea")])
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(first.global_position)
        await running.store.append("Cart-1", [ItemAdded(sku="jam"), ItemAdded(sku="pot")])
        [found] = await status(running.store, running.engine, app.projections)
        assert found.checkpoint == first.global_position
        assert (found.events_behind, found.events_behind_exact) == (2, True)
        assert found.state == "stopped" and found.parked == 0


async def test_a_blue_green_rebuild_builds_and_swaps_in_the_read_model_database(
    apart: Apart,
) -> None:
    app = make_app()
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        await running.store.append("Cart-1", [ItemAdded(sku="tea"), ItemAdded(sku="cup")])
        head = await running.store.head()
        progress = await rebuild(running.store, running.engine, app.projections.get("inventory"))
        assert (progress.phase, progress.events_done, progress.position) == ("done", 2, head)
        assert await stock(running) == {"Cart-1": 2}
    assert not {"test_inventory_stock__shadow", "test_inventory_stock__old"} & await tables_of(
        apart.read_models_url
    )
    assert "test_inventory_stock" not in await tables_of(apart.store_url)


async def test_parked_events_live_with_the_read_models_and_retry_from_the_store(
    apart: Apart,
) -> None:
    inventory = Inventory(poisoned={"bad"})
    app = make_app(inventory)
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        await running.store.append("Cart-1", [ItemAdded(sku="bad")])
        last = await running.store.append("Cart-1", [ItemAdded(sku="tea")])  # behind it
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(last.global_position)
        parked = await list_parked(running.engine, "inventory")
        assert [p.event_type for p in parked] == ["ItemAdded", "ItemAdded"]
        assert await count(apart.read_models_url, "eventfold_parked_events") == 2
        assert await count(apart.store_url, "eventfold_parked_events") == 0

        inventory.poisoned.clear()
        result = await retry_parked(running.store, running.engine, inventory)
        assert len(result.applied) == 2 and result.still_parked == []
        assert await stock(running) == {"Cart-1": 2}


@pytest.mark.parametrize("apart", ["postgres+postgres", "postgres+sqlite"], indirect=True)
async def test_two_runners_share_the_work_through_leases_in_the_read_model_database(
    apart: Apart,
) -> None:
    app = make_app()
    async with (
        app.connect(apart.store_url, read_models=apart.read_models_url) as one,
        app.connect(apart.store_url, read_models=apart.read_models_url) as two,
    ):
        first = await one.store.append("Cart-1", [ItemAdded(sku="tea")])
        runner_one = one.runner(holder="one", **Env.runner_options)
        runner_two = two.runner(holder="two", **Env.runner_options)
        async with runner_one:
            await runner_one.wait_until(first.global_position)
            async with runner_two:
                [held] = await status(one.store, one.engine, app.projections)
                assert held.holder == "one" and not runner_two.states()[0].holding
                await runner_one.stop()  # releases the lease: "two" takes over
                last = await one.store.append("Cart-1", [ItemAdded(sku="jam")])
                await runner_two.wait_until(last.global_position)
                [taken] = await status(one.store, one.engine, app.projections)
                assert taken.holder == "two" and taken.events_behind == 0
        # Each event applied once (the log table's key refuses a second time).
        assert await stock(one) == {"Cart-1": 2}
        assert await count(apart.read_models_url, "test_inventory_log") == 2


async def test_a_process_manager_keeps_its_state_apart_and_sends_commands_to_the_store(
    apart: Apart,
) -> None:
    manager = Restocking()
    app = make_app(manager=manager)
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        db = Database(running.engine)
        assert db.waits_outside(running.store)  # commands are appended outside its batches
        await running.store.append("Cart-1", [ItemAdded(sku="tea")])
        last = await running.store.append("Cart-2", [ItemAdded(sku="tea")])
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(last.global_position)
        shelf = await running.repository.get(Shelf, "Shelf-tea")
        assert shelf.restocks == 2
        instance = await manager.instance(running.engine, "tea")
        assert instance is not None and instance.state == {"seen": 2}
    assert await count(apart.read_models_url, "eventfold_process_states") == 1
    assert await count(apart.store_url, "eventfold_process_states") == 0


class ProbingStore:
    """The store, looking at what the read-model database has open at each append."""

    def __init__(self, inner: EventStore, look: Callable[[], list[str]]) -> None:
        self.inner = inner
        self.look = look
        self.seen_open: list[str] = []
        self.appends = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, *args: Any, **options: Any) -> Any:
        self.appends += 1
        self.seen_open.extend(await asyncio.to_thread(self.look))
        return await self.inner.append(*args, **options)


async def test_a_process_manager_appends_with_no_transaction_open_in_the_read_models(
    apart: Apart,
) -> None:
    # The manager alone: a projection's batches hold transactions of their own meanwhile.
    app = App(events=[ItemAdded, Restocked], aggregates=[Shelf], subscribers=[Restocking()])
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        await running.store.append("Cart-1", [ItemAdded(sku="tea"), ItemAdded(sku="cup")])
        last = await running.store.append("Cart-2", [ItemAdded(sku="tea")])
        models_kind = apart.kind.split("+")[1]
        store = ProbingStore(running.store, open_transactions(models_kind, apart.read_models_url))
        runner = Runner(
            cast(EventStore, store), app.all_subscribers(), engine=running.engine,
            **{**Env.runner_options, "lease_ttl": 60.0},  # no lease renewal meanwhile
        )
        async with runner:
            await runner.wait_until(last.global_position)
    assert store.appends == 3 and store.seen_open == []


async def test_deadlines_live_with_the_read_models_and_fire_commands_into_the_store(
    apart: Apart,
) -> None:
    app = App(events=[ItemAdded, Restocked], aggregates=[Shelf], subscribers=[Restocking()])
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        added = await running.store.append("Cart-1", [ItemAdded(sku="tea")])
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(added.global_position)
        assert await count(apart.read_models_url, "eventfold_deadlines") == 1
        assert await count(apart.store_url, "eventfold_deadlines") == 0
        models_kind = apart.kind.split("+")[1]
        store = ProbingStore(running.store, open_transactions(models_kind, apart.read_models_url))
        poller = DeadlinePoller(cast(EventStore, store), running.engine, app.process_managers())
        later = datetime.now(UTC) + timedelta(days=2)
        assert await poller.fire_due(now=later) == 1
        assert await poller.fire_due(now=later) == 0  # fired once
        assert store.appends == 1 and store.seen_open == []
        shelf = await running.repository.get(Shelf, "Shelf-tea")
        assert shelf.restocks == 2


class ListPublisher:
    """A broker that keeps what it confirms, looking at what the read-model database has
    open at each publish (a test double at a boundary the project does not own)."""

    broker = "a list"

    def __init__(self, look: Callable[[], list[str]]) -> None:
        self.look = look
        self.seen_open: list[str] = []
        self.ids: list[str] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.seen_open.extend(await asyncio.to_thread(self.look))
        self.ids.extend(str(message.message_id) for message in messages)

    async def close(self) -> None:
        pass


async def test_a_relay_keeps_its_checkpoint_with_the_read_models(apart: Apart) -> None:
    models_kind = apart.kind.split("+")[1]
    publisher = ListPublisher(open_transactions(models_kind, apart.read_models_url))
    app = App(events=[ItemAdded], subscribers=[Relay("outbox", publisher)])
    async with app.connect(apart.store_url, read_models=apart.read_models_url) as running:
        await running.store.append("Cart-1", [ItemAdded(sku="tea")])
        last = await running.store.append("Cart-2", [ItemAdded(sku="cup")])
        async with running.runner(**Env.runner_options) as runner:
            await runner.wait_until(last.global_position)
        [relay] = await status(running.store, running.engine, app.subscribers)
        assert relay.checkpoint == last.global_position and relay.events_behind == 0
        records = await running.store.read_all()
    assert publisher.ids == [str(r.event_id) for r in records]
    assert publisher.seen_open == []
    assert await count(apart.store_url, "eventfold_checkpoints") == 0


# --- bad configuration -------------------------------------------------------------------


async def test_a_read_model_file_that_was_never_migrated_is_refused_and_not_created(
    tmp_path: Path,
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await migrate(store_url)
    missing = tmp_path / "read_models.db"
    with pytest.raises(ReadModelsNotMigrated) as caught:
        await make_app().connect(store_url, read_models=f"sqlite:///{missing}")
    assert "has no eventfold schema" in str(caught.value)
    hint = f"eventfold --read-models sqlite:///{missing} migrate --database {store_url}"
    assert hint in str(caught.value)
    assert not missing.exists()


@pytest.mark.postgres
async def test_a_postgres_read_model_database_without_the_schema_is_refused(
    pg_server_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await migrate(store_url)
    empty = await create_database(pg_server_url)
    try:
        with pytest.raises(ReadModelsNotMigrated, match="has no eventfold schema"):
            await make_app().connect(store_url, read_models=empty)
    finally:
        await drop_database(empty)


async def test_an_unreachable_read_model_database_is_one_clear_error(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await migrate(store_url)
    app = App(events=[ItemAdded], read_models="postgresql://app:secret@127.0.0.1:1/models")
    with pytest.raises(ReadModelsUnavailable) as caught:
        await app.connect(store_url)
    message = str(caught.value)
    assert message.startswith("the read-model database at postgresql://app:***@127.0.0.1:1/models")
    assert "secret" not in message and "--read-models" in message
    assert isinstance(caught.value, StoreUnavailable)  # the CLI's "unavailable" exit code


def test_same_database_compares_servers_and_files_not_spellings(tmp_path: Path) -> None:
    assert same_database("postgresql://a:x@h/db", "postgresql+asyncpg://b@h:5432/db")
    assert not same_database("postgresql://h/db", "postgresql://h/other")
    assert not same_database("postgresql://h/db", "postgresql://h:5433/db")
    assert same_database(f"sqlite:///{tmp_path}/a.db", f"sqlite+aiosqlite:///{tmp_path}/./a.db")
    assert not same_database(f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    assert not same_database("memory://", "sqlite+aiosqlite://")
    assert not same_database("sqlite://", "sqlite://")  # each in-memory database is its own
