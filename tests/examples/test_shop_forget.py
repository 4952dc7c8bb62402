"""A customer forgotten in the example shop: after a day of the shop on SQLite and on a real
PostgreSQL database of its own, dave forgotten (the story does it) and every read model
rebuilt, no table of the database holds a byte of his name, e-mail or addresses - every
column of every table is scanned - while every stream still folds, every read model
rebuilds, and the other customers are intact."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from eventfold.aggregates import Aggregate
from eventfold.eventstore import FORGOTTEN
from eventfold.eventstore.migrate import migrate
from eventfold.projections import rebuild
from examples.shop.app import build_app
from examples.shop.customers import Customer, list_customers
from examples.shop.read_models import customer_totals, list_orders
from examples.shop.story import CUSTOMERS, DAVE_MOVED_TO, FORGOTTEN_CUSTOMER, run_shop

DAVE = (*CUSTOMERS[FORGOTTEN_CUSTOMER], DAVE_MOVED_TO)
"""Every value of dave's personal data the shop ever stored."""
DAVE_WORDS = ("Dawson", "Harbour Lane", "Quay Street")
"""Pieces of it, in case a value was stored cut or reshaped."""

MUST_SCAN = {
    "eventfold_events", "eventfold_snapshots", "eventfold_personal_keys",
    "eventfold_process_states", "eventfold_deadlines", "eventfold_checkpoints",
    "shop_orders", "shop_customer_totals", "shop_customer_orders", "shop_customers",
}
"""The tables that must be among those scanned: the log, the keys, snapshots, the process
manager's state and deadlines, checkpoints, and every read model's tables."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shop_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of the test's own: the scan must see only the shop."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
        asyncio.run(migrate(url))
        yield url
    else:
        yield request.getfixturevalue("pg_fresh_url")


# --- scanning every column of every table ---------------------------------------------------


async def scan(
    url: str, needles: list[bytes]
) -> tuple[dict[str, list[str]], dict[bytes, list[str]]]:
    """The tables scanned with their columns, and for each needle the ``table.column``s
    holding it. Every column is scanned, whatever its type, as the bytes it reads as."""
    if url.startswith("sqlite"):
        return _scan_sqlite(url.removeprefix("sqlite:///"), needles)
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' "
            "ORDER BY c.table_name, c.ordinal_position"
        )
        tables: dict[str, list[str]] = {}
        found: dict[bytes, list[str]] = {needle: [] for needle in needles}
        for table, column, data_type in rows:
            tables.setdefault(table, []).append(column)
            as_bytes = (f'"{column}"' if data_type == "bytea"
                        else f"convert_to(\"{column}\"::text, 'UTF8')")
            for needle in needles:
                hits = await conn.fetchval(
                    f'SELECT count(*) FROM "{table}" WHERE position($1::bytea in {as_bytes}) > 0',
                    needle,
                )
                if hits:
                    found[needle].append(f"{table}.{column}")
        return tables, found
    finally:
        await conn.close()


def _scan_sqlite(
    path: str, needles: list[bytes]
) -> tuple[dict[str, list[str]], dict[bytes, list[str]]]:
    db = sqlite3.connect(path)
    try:
        tables: dict[str, list[str]] = {}
        found: dict[bytes, list[str]] = {needle: [] for needle in needles}
        names = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )]
        for table in names:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                tables.setdefault(table, []).append(column)
                for needle in needles:
                    [hits] = db.execute(
                        f'SELECT count(*) FROM "{table}" '
                        f'WHERE instr(CAST("{column}" AS BLOB), ?) > 0',
                        (needle,),
                    ).fetchone()
                    if hits:
                        found[needle].append(f"{table}.{column}")
        return tables, found
    finally:
        db.close()


# --- the test ---------------------------------------------------------------------------------


async def test_a_forgotten_customer_leaves_no_byte_and_everything_still_folds(
    shop_db: str,
) -> None:
    day = await run_shop(shop_db, say=lambda _: None)
    assert [row.name for row in day.customers] == [
        "Alice Archer", "Bob Baker", "Carol Cooper", FORGOTTEN,
    ]

    app = build_app()
    async with app.connect(shop_db) as running:
        # Every read model rebuilt from the log, as the forget's docs ask.
        before = {
            "orders": await list_orders(running.engine),
            "totals": await customer_totals(running.engine),
        }
        for projection in app.projections:
            progress = await rebuild(running.store, running.engine, projection)
            assert progress.events_done > 0, projection.name
        assert await list_orders(running.engine) == before["orders"]
        assert await customer_totals(running.engine) == before["totals"]

        needles = [value.encode() for value in (*DAVE, *DAVE_WORDS)]
        alice = CUSTOMERS["alice"][0].encode()
        tables, found = await scan(shop_db, [*needles, alice])
        print(f"tables scanned on {shop_db.split(':')[0]}:", ", ".join(sorted(tables)))
        assert set(tables) >= MUST_SCAN, MUST_SCAN - set(tables)
        for needle in needles:
            assert found[needle] == [], f"{needle!r} is still in {found[needle]}"
        # The scan sees plaintext where there is some: alice's name in the directory
        # (and nowhere in the log, which holds it sealed).
        assert found[alice] == ["shop_customers.name"]

        # The key is gone with the data; the subject's row stays, marked forgotten.
        async with running.engine.connect() as conn:
            secret = (await conn.execute(sa.text(
                "SELECT secret FROM eventfold_personal_keys WHERE subject = :subject"
            ), {"subject": FORGOTTEN_CUSTOMER})).scalar_one()
        assert secret is None

        # Everything else still folds: every stream of the log loads as its aggregate.
        by_category: dict[str, type[Aggregate]] = {cls.category: cls for cls in app.aggregates}
        streams = await running.store.list_streams(limit=1000)
        assert {stream.category for stream in streams} == set(by_category)
        for stream in streams:
            cls = by_category[stream.category]
            id = stream.stream_id.removeprefix(f"{stream.category}-")
            assert (await running.repository.get(cls, id)).version == stream.version

        dave = await running.repository.get(Customer, FORGOTTEN_CUSTOMER)
        assert (dave.name, dave.email, dave.address, dave.version) == (
            FORGOTTEN, FORGOTTEN, FORGOTTEN, 2,
        )
        alice_now = await running.repository.get(Customer, "alice")
        assert (alice_now.name, alice_now.email, alice_now.address) == CUSTOMERS["alice"]
        directory = {row.customer_id: row for row in await list_customers(running.engine)}
        assert directory["dave"].address == FORGOTTEN
        assert (directory["bob"].name, directory["bob"].email, directory["bob"].address) == (
            CUSTOMERS["bob"]
        )
        dave_orders = [row for row in before["orders"] if row.customer == FORGOTTEN_CUSTOMER]
        assert [(row.status, row.reason) for row in dave_orders] == [
            ("cancelled", "out of stock: 5 x mug wanted, 2 available"),
        ]
