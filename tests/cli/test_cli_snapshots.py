"""``eventfold snapshots take / sweep / prune`` on a SQLite file, with the test application."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import sqlalchemy as sa
from cli_support import APP, Invoke, json_lines, one_error_line

from eventfold import open_snapshots
from eventfold.app import load_app
from eventfold.cli.execution import EXIT_NOT_FOUND
from eventfold.eventstore.engine import create_engine
from eventfold.eventstore.schema import snapshots as table
from eventfold.snapshots import Snapshot


def _snapshots(url: str, stream_id: str) -> list[tuple[int, int]]:
    """(version, state version) of every stored snapshot of the stream, newest first."""

    async def read() -> list[tuple[int, int]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(table.c.version, table.c.state_version)
                    .where(table.c.stream_id == stream_id).order_by(table.c.version.desc())
                )
                return [(version, state_version) for version, state_version in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_take_stores_a_snapshot_at_the_head(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("--database", seeded_url, "--app", APP, "snapshots", "take", "Cart-1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "took a snapshot of Cart-1 at version 3 (state version 2)"
    )
    assert _snapshots(seeded_url, "Cart-1") == [(3, 2)]

    async def state() -> Snapshot | None:
        storage = open_snapshots(seeded_url)
        try:
            return await storage.latest("Cart-1", state_version=2)
        finally:
            await storage.close()

    snapshot = asyncio.run(state())
    assert snapshot is not None
    assert snapshot.state["owner"] == "ann" and snapshot.state["items"] == 2
    assert Decimal(snapshot.state["total"]) == Decimal("10.10")


def test_take_json(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "snapshots", "take", "Cart-2", "--app", APP, "--json")
    assert json_lines(result.stdout) == [
        {"stream_id": "Cart-2", "version": 1, "state_version": 2}
    ]


def test_take_of_a_stream_without_events_is_not_found(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "snapshots", "take", "Cart-404")
    assert result.exit_code == EXIT_NOT_FOUND
    assert "Cart '404' not found" in one_error_line(result)


def test_take_of_a_category_no_aggregate_owns_names_the_known_ones(
    invoke: Invoke, seeded_url: str
) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "snapshots", "take", "Wishlist-9")
    assert result.exit_code == EXIT_NOT_FOUND
    line = one_error_line(result)
    assert "category Wishlist" in line and "categories known: Cart" in line


def test_sweep_snapshots_the_streams_past_the_threshold(invoke: Invoke, seeded_url: str) -> None:
    first = invoke("-d", seeded_url, "-a", APP, "snapshots", "sweep", "--threshold", "2",
                   "--json")
    assert first.exit_code == 0, first.stderr
    [report] = json_lines(first.stdout)
    # Only Cart streams: the application has no aggregate for Wishlist-9.
    assert report == {
        "examined": 2, "failed": {},
        "taken": [{"stream_id": "Cart-1", "version": 3, "state_version": 2}],
    }
    again = invoke("-d", seeded_url, "-a", APP, "snapshots", "sweep", "-t", "2")
    assert again.exit_code == 0, again.stderr
    assert "examined 2 streams, took 0 snapshots" in again.stdout

    everything = invoke("-d", seeded_url, "-a", APP, "snapshots", "sweep", "-t", "1",
                        "--category", "Cart")
    assert "took 1 snapshots" in everything.stdout and "Cart-2" in everything.stdout


def test_sweep_of_an_unknown_category_is_one_line(invoke: Invoke, seeded_url: str) -> None:
    result = invoke("-d", seeded_url, "-a", APP, "snapshots", "sweep", "-c", "Wishlist")
    assert result.exit_code == EXIT_NOT_FOUND
    assert "category Wishlist" in one_error_line(result)


def test_prune_keeps_the_newest_of_the_current_state_version(
    invoke: Invoke, seeded_url: str
) -> None:
    async def store_old_snapshots() -> None:
        storage = open_snapshots(seeded_url)
        try:
            # One of a state version the aggregate no longer has, and two older current ones.
            await storage.save(Snapshot("Cart-1", 1, 1, {"owner": "ann"}))
            await storage.save(Snapshot("Cart-1", 2, 2, {"owner": "ann", "items": 1,
                                                          "total": "3.10"}))
        finally:
            await storage.close()

    asyncio.run(store_old_snapshots())
    assert invoke("-d", seeded_url, "-a", APP, "snapshots", "take", "Cart-1").exit_code == 0
    assert _snapshots(seeded_url, "Cart-1") == [(3, 2), (2, 2), (1, 1)]

    kept_two = invoke("-d", seeded_url, "-a", APP, "snapshots", "prune", "--keep", "2")
    assert kept_two.exit_code == 0, kept_two.stderr
    assert kept_two.stdout.startswith("deleted 1 snapshots")
    assert _snapshots(seeded_url, "Cart-1") == [(3, 2), (2, 2)]

    kept_one = invoke("-d", seeded_url, "-a", APP, "snapshots", "prune", "--json")
    assert json_lines(kept_one.stdout) == [{"deleted": 1, "keep": 1}]
    assert _snapshots(seeded_url, "Cart-1") == [(3, 2)]
    assert load_app(APP).state_versions() == {"Cart": 2}
