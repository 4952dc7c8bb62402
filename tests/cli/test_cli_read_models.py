"""``--read-models URL`` and ``EVENTFOLD_READ_MODELS_URL``: the command line with the read
models in a database of their own (SQLite beside a PostgreSQL store, and beside a SQLite
one), and the one-line errors of a read-model database that is missing or unreachable."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from cli_app import ItemAdded
from cli_support import (
    APP,
    EXPECTED,
    CartOpened,
    Invoke,
    append_cart_events,
    hinted_commands,
    json_lines,
    one_error_line,
    read_model,
    visible,
)

from eventfold import EventRegistry, connect
from eventfold.cli.execution import EXIT_NOT_MIGRATED, EXIT_UNAVAILABLE
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.migrate import SCHEMA_HEAD


def tables(url: str) -> set[str]:
    async def look() -> set[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda s: sa.inspect(s).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(look())


def add_poisoned_cart(url: str) -> uuid.UUID:
    """Cart-7 with a poisoned item (cart_totals parks it); the item's event id."""

    async def append() -> uuid.UUID:
        async with connect(url, EventRegistry([CartOpened, ItemAdded])) as store:
            result = await store.append("Cart-7", [
                CartOpened(owner="eve"), ItemAdded(sku="poison", price=Decimal("1"), quantity=1),
            ])
            await visible(store, result.global_position)
            return (await store.read_stream("Cart-7"))[1].event_id

    return asyncio.run(append())


def status_with(invoke: Invoke, *options: str, env: dict[str, str] | None = None) -> dict[
    str, dict[str, object]
]:
    result = invoke(*options, "-a", APP, "projections", "status", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    [report] = json_lines(result.stdout)
    return {entry["name"]: entry for entry in report["projections"]}


@pytest.mark.postgres
def test_postgres_store_with_read_models_in_a_sqlite_file(
    invoke: Invoke, empty_pg_url: str, tmp_path: Path
) -> None:
    models = f"sqlite:///{tmp_path / 'models.db'}"
    both = ("-d", empty_pg_url, "--read-models", models)

    migrated = invoke(*both, "migrate")
    assert migrated.exit_code == 0, migrated.stderr
    assert migrated.stdout.splitlines() == [
        f"migrated {empty_pg_url} from revision (empty) to {SCHEMA_HEAD} (head)",
        f"migrated {models} from revision (empty) to {SCHEMA_HEAD} (head)",
    ]
    append_cart_events(empty_pg_url)

    before = status_with(invoke, *both)["cart_totals"]
    assert (before["events_behind"], before["checkpoint"]) == (
        3, {"transaction_id": 0, "position": 0},
    )
    rebuilt = invoke(*both, "-a", APP, "projections", "rebuild", "cart_totals")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert read_model(models) == EXPECTED
    assert "cli_cart_totals" not in tables(empty_pg_url)

    # The same read models through the environment variable.
    env = {"EVENTFOLD_READ_MODELS_URL": models}
    after = status_with(invoke, "-d", empty_pg_url, env=env)["cart_totals"]
    assert after["events_behind"] == 0 and after["checkpoint"]["position"] > 0
    # Without it, the store's own database: no checkpoint there.
    assert status_with(invoke, "-d", empty_pg_url)["cart_totals"]["events_behind"] == 3


def test_parked_retry_and_skip_with_read_models_apart(
    invoke: Invoke, seeded_url: str, tmp_path: Path
) -> None:
    models = f"sqlite:///{tmp_path / 'models.db'}"
    env = {"EVENTFOLD_READ_MODELS_URL": models}
    assert invoke("-d", seeded_url, "migrate", env=env).exit_code == 0
    poisoned = add_poisoned_cart(seeded_url)
    rebuilt = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals",
                     "--allow-parked", env=env)
    assert rebuilt.exit_code == 0, rebuilt.stderr

    listed = invoke("-d", seeded_url, "-a", APP, "projections", "parked", "--json", env=env)
    assert [row["event_id"] for row in json_lines(listed.stdout)] == [str(poisoned)]
    assert invoke("-d", seeded_url, "-a", APP, "projections", "parked",
                  "--json").stdout == ""  # nothing parked in the store's database
    skipped = invoke("-d", seeded_url, "-a", APP, "projections", "skip", "cart_totals",
                     str(poisoned), env=env)
    assert skipped.exit_code == 0, skipped.stderr
    retried = invoke("-d", seeded_url, "-a", APP, "projections", "retry", "cart_totals",
                     env=env)
    assert retried.exit_code == 0, retried.stderr
    assert status_with(invoke, "-d", seeded_url, env=env)["cart_totals"]["parked"] == 0
    assert read_model(models) == EXPECTED


def test_a_read_model_database_not_migrated_is_one_line_whose_command_fixes_it(
    invoke: Invoke, seeded_url: str, tmp_path: Path
) -> None:
    models = f"sqlite:///{tmp_path / 'models.db'}"
    result = invoke("-d", seeded_url, "--read-models", models, "-a", APP,
                    "projections", "status")
    assert result.exit_code == EXIT_NOT_MIGRATED
    line = one_error_line(result)
    assert f"the read-model database at {models} has no eventfold schema" in line
    [hint] = hinted_commands(line)
    assert hint == f"eventfold --read-models {models} migrate --database {seeded_url}"
    fixed = invoke(*hint.split()[1:])
    assert fixed.exit_code == 0, fixed.stderr
    assert status_with(invoke, "-d", seeded_url, "--read-models", models)["cart_totals"][
        "events_behind"
    ] == 3


def test_an_unreachable_read_model_database_is_one_line_without_its_secret(
    invoke: Invoke, seeded_url: str
) -> None:
    models = "postgresql://app:hunter2@127.0.0.1:1/models"
    result = invoke("-d", seeded_url, "--read-models", models, "-a", APP, "run")
    assert result.exit_code == EXIT_UNAVAILABLE
    line = one_error_line(result)
    assert line.startswith(
        "error: the read-model database at postgresql://app:***@127.0.0.1:1/models is "
        "unavailable"
    )
    assert "hunter2" not in line and "--read-models" in line


def test_the_apps_own_read_models_url_is_migrated_and_used(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the App names sqlite:///apart_models.db, a relative path
    store = "sqlite:///store.db"
    migrated = invoke("-d", store, "-a", "cli_app:apart_app", "migrate")
    assert migrated.exit_code == 0, migrated.stderr
    assert "migrated sqlite:///apart_models.db from revision (empty)" in migrated.stdout
    append_cart_events(store)
    rebuilt = invoke("-d", store, "-a", "cli_app:apart_app", "projections", "rebuild",
                     "cart_totals")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert read_model("sqlite:///apart_models.db") == EXPECTED
    assert "cli_cart_totals" not in tables(store)
