"""Personal data: sealed at append, opened on read, forgotten for good with its subject's key.

Each scenario runs on SQLite and on a real PostgreSQL database of its own (the memory store
where the database's bytes do not matter), and after a forget every table of the database
is searched for the person's plaintext.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, cast

import asyncpg
import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventfold import (
    Aggregate,
    App,
    Event,
    NewEvent,
    PersonalData,
    Projection,
    ProjectionContext,
    applies,
    handles,
)
from eventfold.eventstore import (
    FORGOTTEN,
    EventRegistry,
    PersonalDataDefinitionError,
    StreamAppend,
    SubjectForgotten,
    connect,
)
from eventfold.eventstore.cloudevents import to_cloudevent
from eventfold.eventstore.keys import KeyStore, MemoryKeyStore
from eventfold.eventstore.migrate import migrate
from eventfold.eventstore.personal import is_sealed, open_value, seal_value
from eventfold.eventstore.testing import KeyStoreConformance
from eventfold.messaging import Message, Relay
from eventfold.projections import Runner, rebuild
from eventfold.upcasters import Upcasters

ADA = ("Ada Lovelace", "ada@example.org")
ALAN = ("Alan Turing", "alan@example.org")


class CustomerRegistered(Event):
    customer_id: str
    name: Annotated[str, PersonalData(subject="customer_id")]
    email: Annotated[str, PersonalData(subject="customer_id")]
    birth_year: Annotated[int | None, PersonalData(subject="customer_id", forgotten=None)] = None
    plan: str = "basic"


class Customer(Aggregate):
    name: str = ""
    email: str = ""
    plan: str = ""

    def register(self, name: str, email: str, birth_year: int) -> None:
        self.record(CustomerRegistered(
            customer_id=self.id, name=name, email=email, birth_year=birth_year
        ))

    @applies(CustomerRegistered)
    def _registered(self, event: CustomerRegistered) -> None:
        self.name, self.email, self.plan = event.name, event.email, event.plan


class Directory(Projection):
    """A read model that copies personal data: only a rebuild forgets it."""

    name = "directory"
    metadata = sa.MetaData()
    entries = sa.Table(
        "customer_directory", metadata,
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
    )

    @handles(CustomerRegistered)
    async def _registered(self, event: CustomerRegistered, ctx: ProjectionContext) -> None:
        await ctx.connection.execute(ctx.customer_directory.insert().values(
            customer_id=event.customer_id, name=event.name, email=event.email
        ))


def make_app() -> App:
    return App(events=[CustomerRegistered], aggregates=[Customer], projections=[Directory()])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'personal.db'}"
        asyncio.run(migrate(url))
        yield url
    else:
        # A database of the test's own: the scan must see only this test's data.
        yield request.getfixturevalue("pg_fresh_url")


# --- searching every table for bytes ------------------------------------------------------


async def tables_holding(url: str, needle: bytes) -> list[str]:
    """``table.column`` of every text, JSON or binary column with a value holding ``needle``."""
    if url.startswith("sqlite"):
        return _sqlite_holding(url.removeprefix("sqlite:///"), needle)
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb', 'bytea')"
        )
        found = []
        for table, column, data_type in columns:
            as_bytes = (
                f'"{column}"' if data_type == "bytea"
                else f"convert_to(\"{column}\"::text, 'UTF8')"
            )
            hits = await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in {as_bytes}) > 0',
                needle,
            )
            if hits:
                found.append(f"{table}.{column}")
        return sorted(found)
    finally:
        await conn.close()


def _sqlite_holding(path: str, needle: bytes) -> list[str]:
    db = sqlite3.connect(path)
    try:
        found = []
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                hits = db.execute(
                    f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS BLOB), ?)',
                    (needle,),
                ).fetchone()[0]
                if hits:
                    found.append(f"{table}.{column}")
        return sorted(found)
    finally:
        db.close()


async def secret_of(url: str, subject: str) -> bytes:
    """The subject's key as the database holds it (to prove it is gone afterwards)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            secret = conn.execute(
                sa.text("SELECT secret FROM eventfold_personal_keys WHERE subject = :s"),
                {"s": subject},
            ).scalar_one()
    finally:
        engine.dispose()
    return bytes(secret)


# --- the whole story on real databases ----------------------------------------------------


async def test_forgetting_leaves_no_byte_of_the_person_and_everything_still_folds(
    url: str,
) -> None:
    app = make_app()
    async with app.connect(url) as running:
        for customer_id, (name, email) in {"ada": ADA, "alan": ALAN}.items():
            customer = Customer(customer_id)
            customer.register(name, email, 1815 if customer_id == "ada" else 1912)
            await running.repository.save(customer)
        await running.take_snapshot("Customer-ada")
        async with running.runner() as runner:
            await runner.wait_until(await running.store.committed_head())

        # At rest the log holds ciphertext only; reads, folds and read models see plaintext.
        assert await tables_holding(url, ADA[0].encode()) == [
            "customer_directory.name", "eventfold_snapshots.state",
        ]
        assert (await running.repository.get(Customer, "ada")).name == ADA[0]
        secret = await secret_of(url, "ada")

        dry = await running.forget("ada", dry_run=True)
        assert (dry.streams, dry.snapshotted_streams) == ({"Customer-ada": 1}, 1)
        assert (await running.repository.get(Customer, "ada")).name == ADA[0]

        done = await running.forget("ada")
        assert (done.events, done.snapshotted_streams, done.already_forgotten) == (1, 1, False)
        for projection in app.projections:
            await rebuild(running.store, running.engine, projection)

        for value in (*ADA, b"1815", secret):
            needle = value if isinstance(value, bytes) else value.encode()
            holders = await tables_holding(url, needle)
            if value == b"1815":  # a year is short: only where it could be the person's
                holders = [h for h in holders if not h.startswith("eventfold_alembic")]
            assert holders == [], f"{value!r} is still in {holders}"
        # The other customer is intact, in the log and in the rebuilt read model.
        assert "customer_directory.name" in await tables_holding(url, ALAN[0].encode())

        ada = await running.repository.get(Customer, "ada")
        assert (ada.name, ada.email, ada.plan, ada.version) == (FORGOTTEN, FORGOTTEN, "basic", 1)
        assert (await running.repository.get(Customer, "alan")).email == ALAN[1]
        async with running.engine.connect() as conn:
            rows = dict((await conn.execute(
                sa.select(Directory.entries.c.customer_id, Directory.entries.c.name)
            )).all())
        assert rows == {"ada": FORGOTTEN, "alan": ALAN[0]}
        exported = [to_cloudevent(record)["data"] for record in await running.store.read_all()]
        assert [(d["name"], d["birth_year"]) for d in exported] == [
            (FORGOTTEN, None), (ALAN[0], 1912),
        ]

        again = await running.forget("ada")
        assert again.already_forgotten and again.events == 1


async def test_a_forgotten_subject_gets_no_new_personal_data(url: str) -> None:
    async with connect(url, EventRegistry([CustomerRegistered])) as store:
        await store.forget("ada")  # never seen: forgotten all the same
        with pytest.raises(SubjectForgotten, match="'ada' was forgotten"):
            await store.append("Customer-ada", [CustomerRegistered(
                customer_id="ada", name=ADA[0], email=ADA[1]
            )])
        assert await store.stream_version("Customer-ada") == 0
        # The placeholder is nobody's data: a command may carry a forgotten state forward.
        await store.append("Customer-ada", [CustomerRegistered(
            customer_id="ada", name=FORGOTTEN, email=FORGOTTEN, plan="gold"
        )])
        [record] = await store.read_stream("Customer-ada")
        assert record.data["name"] == FORGOTTEN and record.data["plan"] == "gold"


async def test_a_retried_append_with_personal_data_is_still_a_no_op(url: str) -> None:
    async with connect(url, EventRegistry([CustomerRegistered])) as store:
        batch = [NewEvent(CustomerRegistered(customer_id="ada", name=ADA[0], email=ADA[1]))]
        first = await store.append("Customer-ada", batch)
        assert await store.append("Customer-ada", batch) == first
        assert len(await store.read_stream("Customer-ada")) == 1


async def test_append_streams_seals_personal_data_as_append_does(url: str) -> None:
    async with connect(url, EventRegistry([CustomerRegistered])) as store:
        call = [
            StreamAppend(f"Customer-{who}", [NewEvent(CustomerRegistered(
                customer_id=who, name=name, email=email
            ))])
            for who, (name, email) in (("ada", ADA), ("alan", ALAN))
        ]
        first = await store.append_streams(call)
        assert await store.append_streams(call) == first  # a retry is still a no-op
        await store.forget("alan")
        with pytest.raises(SubjectForgotten, match="'alan' was forgotten"):
            await store.append_streams([
                StreamAppend("Customer-ada", [CustomerRegistered(
                    customer_id="ada", name=ADA[0], email=ADA[1]
                )]),
                StreamAppend("Customer-alan", [CustomerRegistered(
                    customer_id="alan", name=ALAN[0], email=ALAN[1]
                )]),
            ])
        assert await store.stream_version("Customer-ada") == 1
        [ada] = await store.read_stream("Customer-ada")
        assert ada.data["name"] == ADA[0]
    assert await tables_holding(url, ADA[1].encode()) == []


@pytest.mark.postgres
async def test_two_stores_making_a_new_subjects_key_at_once_share_one(pg_clean_url: str) -> None:
    registry = EventRegistry([CustomerRegistered])
    async with connect(pg_clean_url, registry) as one, connect(pg_clean_url, registry) as two:
        subjects = [f"c{n}" for n in range(20)]
        await asyncio.gather(*(
            store.append(f"Customer-{subject}-{n}", [CustomerRegistered(
                customer_id=subject, name=f"name {subject} {n}", email="e"
            )])
            for subject in subjects for n, store in enumerate((one, two))
        ))
        conn = await asyncpg.connect(pg_clean_url)
        try:
            keys = await conn.fetchval("SELECT count(*) FROM eventfold_personal_keys")
        finally:
            await conn.close()
        assert keys == len(subjects)
        for store in (one, two):
            records = await store.read_all()
            names = {cast(CustomerRegistered, registry.decode(r)).name for r in records}
            assert names == {f"name {s} {n}" for s in subjects for n in (0, 1)}


async def test_a_forget_in_one_store_takes_effect_in_every_store_of_the_process(
    url: str,
) -> None:
    registry = EventRegistry([CustomerRegistered])
    async with connect(url, registry) as reader, connect(url, registry) as forgetter:
        await reader.append("Customer-ada", [CustomerRegistered(
            customer_id="ada", name=ADA[0], email=ADA[1]
        )])
        assert (await reader.read_stream("Customer-ada"))[0].data["name"] == ADA[0]
        await forgetter.forget("ada")
        assert (await reader.read_stream("Customer-ada"))[0].data["name"] == FORGOTTEN
        with pytest.raises(SubjectForgotten):
            await reader.append("Customer-ada", [CustomerRegistered(
                customer_id="ada", name="Ada", email=ADA[1]
            )])


# --- upcasters, definitions, the sealed form ----------------------------------------------


class ContactAdded(Event):
    """Version 2 keeps the name in capitals; an upcaster carries version 1 forward."""

    schema_version = 2
    person_id: str
    name: Annotated[str, PersonalData(subject="person_id")]


async def test_upcasters_see_plain_values_and_forgotten_ones_as_placeholders(
    tmp_path: Path,
) -> None:
    class ContactAddedV1(Event):
        event_type = "ContactAdded"
        person_id: str
        name: Annotated[str, PersonalData(subject="person_id")]

    url = f"sqlite:///{tmp_path / 'contacts.db'}"
    await migrate(url)
    async with connect(url, EventRegistry([ContactAddedV1])) as old:
        await old.append("Contact-1", [ContactAddedV1(person_id="p1", name="Grace Hopper")])
        await old.append("Contact-2", [ContactAddedV1(person_id="p2", name="Edsger Dijkstra")])
        await old.forget("p2")
    upcasters = Upcasters()
    seen: list[str] = []

    @upcasters.register("ContactAdded", 1)
    def _capitals(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data["name"])
        return {**data, "name": data["name"].upper()}

    # The same rows, read by a later version of the application.
    async with connect(url, EventRegistry([ContactAdded], upcaster=upcasters)) as new:
        records = await new.read_all()
    assert [r.data["name"] for r in records] == ["GRACE HOPPER", FORGOTTEN.upper()]
    assert seen == ["Grace Hopper", FORGOTTEN]


def test_a_personal_data_mark_that_cannot_work_is_refused_at_registration() -> None:
    class NoSubject(Event):
        name: Annotated[str, PersonalData(subject="customer_id")]

    class BadPlaceholder(Event):
        customer_id: str
        born: Annotated[int, PersonalData(subject="customer_id")]

    with pytest.raises(PersonalDataDefinitionError, match="'customer_id' is not a field"):
        EventRegistry([NoSubject])
    with pytest.raises(PersonalDataDefinitionError, match=r"forgotten=\.\.\."):
        EventRegistry([BadPlaceholder])


TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
"""What an event's string can hold (JSON has no lone surrogates; PostgreSQL no NUL)."""

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(TEXT)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT), inner, max_size=4),
    max_leaves=12,
)


@given(value=JSON_VALUES, name=st.text(min_size=1), secret=st.binary(min_size=32, max_size=32))
def test_any_json_value_seals_and_opens_to_itself(value: Any, name: str, secret: bytes) -> None:
    event_id = uuid.uuid4()
    sealed = seal_value(secret, "key-1", event_id, name, value, FORGOTTEN)
    assert is_sealed(json.loads(json.dumps(sealed)))
    assert open_value(secret, event_id, name, sealed) == value


def test_a_sealed_value_moved_to_another_event_or_field_does_not_open() -> None:
    event_id, secret = uuid.uuid4(), b"k" * 32
    sealed = seal_value(secret, "key-1", event_id, "name", ADA[0], FORGOTTEN)
    assert ADA[0] not in json.dumps(sealed)
    for other_event, other_field in ((uuid.uuid4(), "name"), (event_id, "email")):
        with pytest.raises(InvalidTag):
            open_value(secret, other_event, other_field, sealed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.text(TEXT, min_size=1), max_size=3),
        min_size=1,
    ),
    forgotten=st.sets(st.sampled_from(["a", "b", "c", "d"])),
)
def test_forgetting_some_subjects_leaves_every_other_subjects_data_intact(
    names: dict[str, list[str]], forgotten: set[str]
) -> None:
    async def story() -> list[tuple[str, str]]:
        async with connect("memory://", EventRegistry([CustomerRegistered])) as store:
            for subject, values in names.items():
                for value in values:
                    await store.append(f"Customer-{subject}", [CustomerRegistered(
                        customer_id=subject, name=value, email=f"{value}@mail"
                    )])
            for subject in forgotten:
                await store.forget(subject)
            return [(r.data["customer_id"], r.data["name"]) for r in await store.read_all()]

    read = asyncio.run(story())
    assert read == [
        (subject, FORGOTTEN if subject in forgotten else value)
        for subject, values in names.items() for value in values
    ]


# --- the key stores -----------------------------------------------------------------------


class TestMemoryKeyStore(KeyStoreConformance):
    @pytest.fixture
    def keys(self) -> KeyStore:
        return MemoryKeyStore()


class TestSqlKeyStores(KeyStoreConformance):
    """The stores' own key stores, on SQLite and PostgreSQL."""

    @pytest.fixture
    async def keys(self, url: str) -> AsyncIterator[KeyStore]:
        async with connect(url, EventRegistry()) as store:
            yield store._shredder.keys  # type: ignore[attr-defined]


class RecordingPublisher:
    """The broker's side of a relay (a boundary eventfold does not own): keeps the bodies."""

    broker = "a recording broker"

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.bodies.extend(message.body for message in messages)

    async def close(self) -> None:
        pass


async def test_a_relay_publishes_the_placeholder_once_the_subject_is_forgotten(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    await migrate(url)
    before, after = RecordingPublisher(), RecordingPublisher()
    app = App(events=[CustomerRegistered], subscribers=[
        Relay("before", before), Relay("after", after),
    ])
    async with app.connect(url) as running:
        await running.store.append("Customer-ada", [CustomerRegistered(
            customer_id="ada", name=ADA[0], email=ADA[1]
        )])
        async with Runner(running.store, [app.subscribers[0]], engine=running.engine) as runner:
            await runner.wait_until(await running.store.committed_head())
        await running.forget("ada")
        async with Runner(running.store, [app.subscribers[1]], engine=running.engine) as runner:
            await runner.wait_until(await running.store.committed_head())
    [published] = before.bodies
    assert json.loads(published)["data"]["name"] == ADA[0]
    [republished] = after.bodies
    assert json.loads(republished)["data"]["name"] == FORGOTTEN
    assert ADA[0].encode() not in republished and ADA[1].encode() not in republished
