"""Fixtures of the messaging tests: brokers (real, checked), stores on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka_broker import TansuBroker
from messaging_support import (
    NATS_URL,
    RABBITMQ_URL,
    START_NATS,
    START_RABBITMQ,
    Env,
    NatsServer,
    create_effects,
    empty_store_tables,
    make_registry,
    require,
)
from sqlalchemy.engine import make_url

from eventfold.eventstore import connect
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import migrate


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The machine's RabbitMQ (the test fails with how to start it when it is down)."""
    url = make_url(RABBITMQ_URL.replace("amqp://", "postgresql://", 1))
    require(url.host or "127.0.0.1", url.port or 5672, "RabbitMQ", START_RABBITMQ)
    return RABBITMQ_URL


@pytest.fixture(scope="session")
def nats_url() -> str:
    """The machine's NATS with JetStream (fails with how to start it when it is down)."""
    url = make_url(NATS_URL.replace("nats://", "postgresql://", 1))
    require(url.host or "127.0.0.1", url.port or 4222, "NATS", START_NATS)
    return NATS_URL


@pytest.fixture
def own_tansu() -> Iterator[TansuBroker]:
    """A Tansu broker of this test's own, on a free port, that the test may kill."""
    broker = TansuBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A nats-server of this test's own, on a free port, that the test may kill."""
    server = NatsServer(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """An empty store on a SQLite file or the test PostgreSQL database."""
    kind: str = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        await migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    if kind == "postgres":
        await empty_store_tables(engine)
    await create_effects(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM test_msg_effects"))
    store = await connect(url, make_registry())
    try:
        yield Env(kind, url, store, engine)
    finally:
        await store.close()
        await engine.dispose()


@pytest.fixture
async def pg_env(pg_url: str) -> AsyncIterator[Env]:
    """An empty store on the test PostgreSQL database."""
    engine = create_engine(pg_url)
    await empty_store_tables(engine)
    await create_effects(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM test_msg_effects"))
    store = await connect(pg_url, make_registry())
    try:
        yield Env("postgres", pg_url, store, engine)
    finally:
        await store.close()
        await engine.dispose()
