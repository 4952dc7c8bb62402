"""``eventfold projections status / rebuild / reset / parked / retry / skip`` with the test
application, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import pytest
from cli_app import ItemAdded
from cli_support import (
    APP,
    EXPECTED,
    CartOpened,
    Invoke,
    append_cart_events,
    json_lines,
    one_error_line,
    read_model,
    status_of,
    visible,
)

from eventfold import EventRegistry, connect
from eventfold.cli.execution import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE


def add_poisoned_cart(url: str) -> list[uuid.UUID]:
    """Cart-7: opened, a poisoned item (parked by cart_totals), then a good one; the ids of
    the two items."""

    async def append() -> list[uuid.UUID]:
        async with connect(url, EventRegistry([CartOpened, ItemAdded])) as store:
            result = await store.append("Cart-7", [
                CartOpened(owner="eve"),
                ItemAdded(sku="poison", price=Decimal("1.00"), quantity=1),
                ItemAdded(sku="jam", price=Decimal("2.50"), quantity=2),
            ])
            await visible(store, result.global_position)
            return [record.event_id for record in (await store.read_stream("Cart-7"))[1:]]

    return asyncio.run(append())


# --- SQLite -------------------------------------------------------------------------------------


def test_status_before_any_runner(invoke: Invoke, seeded_url: str) -> None:
    status = status_of(invoke, seeded_url)
    assert list(status) == ["cart_totals", "welcome"]
    totals = status["cart_totals"]
    assert totals["state"] == "stopped" and totals["holder"] is None
    assert totals["checkpoint"] == {"transaction_id": 0, "position": 0}
    assert (totals["events_behind"], totals["events_behind_exact"]) == (3, True)
    assert status["welcome"]["events_behind"] == 2  # it handles CartOpened only
    assert totals["parked"] == 0 and totals["rate"] == 0

    table = invoke("-d", seeded_url, "-a", APP, "projections", "status")
    assert table.exit_code == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(" cart_totals"))
    assert row.split()[:6] == ["cart_totals", "stopped", "-", "0", "3", row.split()[5]]


def test_status_of_some_names_only(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "projections", "status", "welcome", "--json")
    assert [e["name"] for e in json_lines(result.stdout)[0]["projections"]] == ["welcome"]


def test_rebuild_blue_green_then_status(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "rebuilt cart_totals (blue/green, swapped in): 3 events in "
    )
    assert "checkpoint at position 5" in result.stdout
    assert "rebuilding cart_totals (done)" in result.stderr  # the bar's last state
    assert "3 events" in result.stderr and "ETA 0s" in result.stderr
    assert read_model(seeded_url) == EXPECTED

    totals = status_of(invoke, seeded_url)["cart_totals"]
    assert totals["checkpoint"] == {"transaction_id": 5, "position": 5}
    assert totals["events_behind"] == 0

    # Again, over the tables in place: the same model, built anew.
    again = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals",
                   "--json")
    assert again.exit_code == 0, again.stderr
    [final] = json_lines(again.stdout)
    assert (final["name"], final["in_place"], final["events"], final["parked"]) == (
        "cart_totals", False, 3, 0,
    )
    assert read_model(seeded_url) == EXPECTED


def test_rebuild_in_place(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals",
                    "--in-place", "--json", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    [final] = json_lines(result.stdout)
    assert (final["in_place"], final["events"]) == (True, 3)
    assert final["checkpoint"]["position"] == 5
    assert read_model(seeded_url) == EXPECTED


def test_reset_empties_the_model_and_rewinds_the_checkpoint(
    invoke: Invoke, seeded_url: str
) -> None:
    assert invoke("-d", seeded_url, "-a", APP, "projections", "rebuild",
                  "cart_totals").exit_code == 0
    result = invoke("-d", seeded_url, "-a", APP, "projections", "reset", "cart_totals")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("reset cart_totals: its tables are empty")
    assert read_model(seeded_url) == {}
    totals = status_of(invoke, seeded_url)["cart_totals"]
    assert totals["checkpoint"]["position"] == 0 and totals["events_behind"] == 3


def test_parked_events_are_listed_retried_and_skipped(invoke: Invoke, seeded_url: str) -> None:
    poisoned, behind = add_poisoned_cart(seeded_url)
    refused = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals")
    assert refused.exit_code == EXIT_ERROR
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ") and "Traceback" not in refused.stderr
    assert "the rebuild of 'cart_totals' parked 2 event(s)" in error
    assert status_of(invoke, seeded_url)["cart_totals"]["parked"] == 0  # not swapped in
    # The command the error names runs as printed and shows the kept shadow's events.
    command = error.split("`")[1].split()
    assert command == ["eventfold", "projections", "parked", "cart_totals#rebuild"]
    shown = invoke("-d", seeded_url, "-a", APP, *command[1:])
    assert shown.exit_code == 0, shown.stderr
    assert str(poisoned) in shown.stdout and str(behind) in shown.stdout

    rebuilt = invoke("-d", seeded_url, "-a", APP, "projections", "rebuild", "cart_totals",
                     "--allow-parked")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert "2 events parked" in rebuilt.stdout
    assert read_model(seeded_url) == EXPECTED  # Cart-7 waits behind its poisoned event
    assert status_of(invoke, seeded_url)["cart_totals"]["parked"] == 2

    listed = invoke("-d", seeded_url, "-a", APP, "projections", "parked", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json_lines(listed.stdout)
    assert [(r["subscriber"], r["event_id"], r["stream_id"]) for r in rows] == [
        ("cart_totals", str(poisoned), "Cart-7"), ("cart_totals", str(behind), "Cart-7"),
    ]
    assert rows[0]["error"] == "PoisonedItem: poison must not be counted"
    assert "Traceback" in rows[0]["traceback"] and rows[0]["blocked_by"] is None
    assert rows[1]["blocked_by"] == rows[0]["position"]

    table = invoke("-d", seeded_url, "-a", APP, "projections", "parked", "cart_totals")
    assert table.exit_code == 0, table.stderr
    assert str(poisoned) in table.stdout and str(behind) in table.stdout
    assert "PoisonedItem: poison must not be counted" in table.stdout
    assert "waits behind position" in table.stdout

    retried = invoke("-d", seeded_url, "-a", APP, "projections", "retry", "cart_totals")
    assert retried.exit_code == EXIT_ERROR
    assert "applied 0 parked events of cart_totals; 2 still parked" in retried.stdout
    assert f"ItemAdded {poisoned} failed again" in retried.stderr.strip().splitlines()[-1]

    skipped = invoke("-d", seeded_url, "-a", APP, "projections", "skip", "cart_totals",
                     str(poisoned))
    assert skipped.exit_code == 0, skipped.stderr
    assert "skipped 1 parked event of cart_totals without applying it" in skipped.stdout

    applied = invoke("-d", seeded_url, "-a", APP, "projections", "retry", "cart_totals",
                     "--json")
    assert applied.exit_code == 0, applied.stderr
    [outcome] = json_lines(applied.stdout)
    assert [p["event_id"] for p in outcome["applied"]] == [str(behind)]
    assert outcome["still_parked"] == []
    assert read_model(seeded_url) == {**EXPECTED, "Cart-7": (2, Decimal("5.00"))}

    empty = invoke("-d", seeded_url, "-a", APP, "projections", "parked", "cart_totals")
    assert empty.stdout.strip() == "no parked events for cart_totals"


def test_skip_of_an_event_that_is_not_parked_is_not_found(
    invoke: Invoke, seeded_url: str
) -> None:
    event_id = uuid.uuid4()
    result = invoke("-d", seeded_url, "-a", APP, "projections", "skip", "cart_totals",
                    str(event_id))
    assert result.exit_code == EXIT_NOT_FOUND
    assert f"event {event_id} is not parked for 'cart_totals'" in one_error_line(result)


def test_skip_of_something_that_is_no_event_id_is_a_usage_error(
    invoke: Invoke, seeded_url: str
) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "projections", "skip", "cart_totals", "nope")
    assert result.exit_code == EXIT_USAGE


@pytest.mark.parametrize("command", [
    ["rebuild", "nope"], ["reset", "nope"], ["parked", "nope"], ["retry", "nope"],
    ["skip", "nope", str(uuid.UUID(int=1))], ["status", "nope"],
    ["rebuild", "welcome"],  # a process manager: its state is not a read model to rebuild
], ids=" ".join)
def test_an_unknown_name_is_one_line_naming_the_known_ones(
    invoke: Invoke, seeded_url: str, command: list[str]
) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "projections", *command)
    assert result.exit_code == EXIT_NOT_FOUND
    line = one_error_line(result)
    assert f"no projection named {command[1]!r} is registered (known: cart_totals" in line


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg_seeded(pg_clean_url: str) -> Iterator[str]:
    """The session's PostgreSQL database: the cart events, no read-model tables yet."""

    async def drop_read_models() -> None:
        conn = await asyncpg.connect(pg_clean_url)
        try:
            for suffix in ("", "__shadow", "__old"):
                await conn.execute(f'DROP TABLE IF EXISTS "cli_cart_totals{suffix}"')
        finally:
            await conn.close()

    asyncio.run(drop_read_models())
    append_cart_events(pg_clean_url)
    yield pg_clean_url
    asyncio.run(drop_read_models())


@pytest.mark.postgres
def test_rebuild_and_status_on_postgres(invoke: Invoke, pg_seeded: str) -> None:
    before = status_of(invoke, pg_seeded)["cart_totals"]
    assert (before["state"], before["events_behind"]) == ("stopped", 3)

    result = invoke("-d", pg_seeded, "-a", APP, "projections", "rebuild", "cart_totals")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("rebuilt cart_totals (blue/green, swapped in): 3 events")
    assert read_model(pg_seeded) == EXPECTED
    after = status_of(invoke, pg_seeded)["cart_totals"]
    assert after["events_behind"] == 0 and after["checkpoint"]["position"] == 5

    in_place = invoke("-d", pg_seeded, "-a", APP, "projections", "rebuild", "cart_totals",
                      "--in-place")
    assert in_place.exit_code == 0, in_place.stderr
    assert read_model(pg_seeded) == EXPECTED


@pytest.mark.postgres
def test_status_names_the_open_transaction_that_holds_readers_back(
    invoke: Invoke, pg_seeded: str
) -> None:
    async def hold_and_report() -> tuple[int, dict[str, object], str]:
        straggler = await asyncpg.connect(
            pg_seeded, server_settings={"application_name": "cli-test-straggler"}
        )
        try:
            transaction = straggler.transaction()
            await transaction.start()
            # A transaction id is assigned at the first write: from here on it holds xmin.
            await straggler.fetchval("SELECT pg_current_xact_id()")
            pid = await straggler.fetchval("SELECT pg_backend_pid()")
            loop = asyncio.get_running_loop()
            as_json = await loop.run_in_executor(None, lambda: invoke(
                "-d", pg_seeded, "-a", APP, "projections", "status", "--json",
                "--horizon-age", "0",
            ))
            table = await loop.run_in_executor(None, lambda: invoke(
                "-d", pg_seeded, "-a", APP, "projections", "status", "--horizon-age", "0",
            ))
            await transaction.rollback()
        finally:
            await straggler.close()
        assert as_json.exit_code == 0 and table.exit_code == 0, as_json.stderr + table.stderr
        [report] = json_lines(as_json.stdout)
        holders = {holder["pid"]: holder for holder in report["horizon_holders"]}
        return pid, holders[pid], table.stdout

    pid, holder, table = asyncio.run(hold_and_report())
    assert holder["application_name"] == "cli-test-straggler"
    assert holder["state"] in {"idle in transaction", "active"}
    assert isinstance(holder["transaction_age_seconds"], float)
    assert "readers of the log wait for these open transactions" in table
    assert f"pid {pid} application 'cli-test-straggler' idle in transaction for " in table

    quiet = status_of(invoke, pg_seeded)  # the default threshold: nobody holds on that long
    assert quiet  # and no error
    default = invoke("-d", pg_seeded, "-a", APP, "projections", "status", "--json")
    assert json_lines(default.stdout)[0]["horizon_holders"] == []
