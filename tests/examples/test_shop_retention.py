"""The shop deletes cancelled carts after their retention period: each day's story gives a
cart up and runs the job as if 31 days had passed; the cart goes, the open one stays."""

from __future__ import annotations

from pathlib import Path

from eventfold import AggregateNotFound
from examples.shop.app import build_app
from examples.shop.cart import Cart
from examples.shop.story import run_shop


async def _check(url: str) -> None:
    days = [await run_shop(url, say=lambda line: None) for _ in range(2)]
    for day in days:
        # Each day deletes its own cart; yesterday's went yesterday.
        assert day.deleted_carts == (f"Cart-{day.run}-erin",)
    async with build_app().connect(url) as running:
        for day in days:
            try:
                await running.repository.get(Cart, f"{day.run}-erin")
            except AggregateNotFound:
                pass
            else:
                raise AssertionError("a deleted cart still loads")
            kept = await running.repository.get(Cart, f"{day.run}-finn")
            assert kept.customer == "finn" and not kept.cancelled


async def test_cancelled_carts_go_on_sqlite(tmp_path: Path) -> None:
    await _check(f"sqlite:///{tmp_path / 'shop.db'}")


async def test_cancelled_carts_go_on_postgres(shop_pg_url: str) -> None:
    await _check(shop_pg_url)
