"""The console in a real browser: Chromium (Debian's, driven by Playwright) clicks through
every view of a real ``eventfold ui`` on the shop's database, watches the lag chart and
the tail update live, and retries a parked event with the token once its cause is fixed.

Each view is photographed into ``build/ui-screenshots/`` (the path is printed at the end of
the run). Chromium is found at /usr/bin/chromium, or where ``EVENTFOLD_TEST_CHROMIUM``
says; without it these tests fail, saying how to install it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from ui_app import app
from ui_support import (
    POISON_ORDER,
    POISONED,
    SCREENSHOTS,
    console_process,
    cure,
    runner_process,
    snap,
)

from examples.shop.events import OrderLine
from examples.shop.order import Order
from examples.shop.story import PRICES

CHROMIUM_ENV = "EVENTFOLD_TEST_CHROMIUM"
WAIT_MS = 30_000
"""How long an expectation waits for the page (generous: the machine is shared)."""
expect.set_options(timeout=WAIT_MS)


def chromium() -> str:
    """The Chromium to drive; fails the test, saying how to get one, when there is none."""
    path = os.environ.get(CHROMIUM_ENV) or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            f"no Chromium at {path}: the browser tests need it - apt-get install chromium "
            f"(or set {CHROMIUM_ENV} to a Chromium binary)", pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for this module's tests."""
    executable = chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser tab, wide enough for the tables."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def place_order(url: str, order_id: str, customer: str) -> None:
    """A customer places an order while the console runs (another process appends)."""

    async def place() -> None:
        async with app.connect(url) as running:
            await running.repository.create(Order, order_id, partial(
                Order.place, customer=customer,
                lines=[OrderLine(sku="mug", quantity=1, unit_price=PRICES["mug"])],
            ))

    # In a thread of its own: Playwright's loop runs in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, place()).result()


def test_every_view_in_the_browser(page: Page, shop_url: str, poison_file: Path) -> None:
    with console_process(shop_url, poison_file) as console:
        page.goto(console.url)
        expect(page).to_have_url(re.compile(r"/streams$"))
        expect(page.locator("#streams")).to_contain_text("InventoryItem-book")
        expect(page.locator(".mode")).to_have_text("actions allowed")
        snap(page, "01-streams")

        page.get_by_label("id starts with").fill("Order-")
        page.get_by_role("button", name="Search").click()
        rows = page.locator("#streams tbody tr td:first-child")
        expect(rows.first).to_contain_text("Order-")
        assert all(text.startswith("Order-") for text in rows.all_inner_texts())
        snap(page, "02-streams-search")

        page.goto(f"{console.url}/streams?limit=3")
        first_page = page.locator("#streams tbody tr td:first-child").all_inner_texts()
        page.locator("#next-page").click()
        expect(page.locator("#first-page")).to_be_visible()
        second_page = page.locator("#streams tbody tr td:first-child").all_inner_texts()
        assert len(first_page) == len(second_page) == 3
        assert max(first_page) < min(second_page)

        page.goto(f"{console.url}/streams?prefix=Order-{POISON_ORDER}")
        page.get_by_role("link", name=f"Order-{POISON_ORDER}", exact=True).click()
        expect(page.locator("#events")).to_contain_text("OrderPlaced")
        snap(page, "03-stream")

        page.locator("#events tbody tr").first.get_by_role("link").first.click()
        expect(page.locator("#data")).to_contain_text(f'"customer": "{POISONED}"')
        expect(page.locator("#metadata")).to_contain_text(f'"checkout-{POISON_ORDER}"')
        expect(page.locator("#cloudevent")).to_contain_text('"specversion": "1.0"')
        expect(page.locator("#cloudevent")).to_contain_text(f'"subject": "Order-{POISON_ORDER}"')
        snap(page, "04-event")

        page.locator("#trace-event").click()
        tree = page.locator("#trace")
        expect(tree).to_contain_text("StockReserved")
        expect(tree).to_contain_text("PaymentRequested")
        expect(page.locator("#trace .node.selected")).to_contain_text("OrderPlaced")
        snap(page, "05-trace")

        # No runner serves the application yet: an order leaves every subscriber behind,
        # and the page shows it without a reload (table and chart follow the lag).
        page.locator("#nav-projections").click()
        audit = page.locator('#projections tr[data-name="order_audit"]')
        expect(audit.locator('[data-field="parked"]')).to_have_text("1")
        expect(audit.locator('[data-field="state"]')).to_have_text("stopped")
        expect(page.locator("#lag-legend")).to_contain_text("order_audit: 0 behind")
        place_order(shop_url, "lag-1", "lena")
        expect(audit.locator('[data-field="events_behind"]')).to_have_text("1")
        expect(page.locator("#lag-legend")).to_contain_text("order_audit: 1 behind")
        expect(page.locator("#lag-chart polyline")).to_have_count(4)
        snap(page, "06-projections-behind")

        with runner_process(shop_url, poison_file) as holder:
            expect(audit.locator('[data-field="state"]')).to_have_text("running")
            expect(audit.locator('[data-field="holder"]')).to_have_text(holder)
            expect(page.locator("#lag-legend")).to_contain_text("order_audit: 0 behind")
            snap(page, "07-projections-caught-up")

            page.locator("#nav-holders").click()
            for name in ("order_list", "customer_totals", "order_audit", "fulfilment"):
                lease = page.locator("#leases tr", has=page.get_by_text(name, exact=True))
                expect(lease).to_contain_text(holder)
                expect(lease).to_contain_text("held")
            expect(page.locator("#unheld")).to_have_count(0)
            snap(page, "08-holders")

            page.locator("#nav-tail").click()
            expect(page.locator("#tail-status")).to_have_text("following")
            place_order(shop_url, "tail-1", "tina")
            expect(page.locator("#tail tbody")).to_contain_text("Order-tail-1@1")
            expect(page.locator("#tail tbody")).to_contain_text('"customer":"tina"')
            # The runner's fulfilment process answers the order: its events follow live.
            expect(page.locator("#tail tbody")).to_contain_text("Payment-tail-1@1")
            snap(page, "09-tail")

            page.locator("#tail tbody a", has_text="Order-tail-1@1").click()
            expect(page.locator("#data")).to_contain_text('"customer": "tina"')

        page.locator("#nav-parked").click()
        section = page.locator('section[data-name="order_audit"]')
        expect(section).to_contain_text(f"Order-{POISON_ORDER}")
        expect(section).to_contain_text("is on the poison list")
        snap(page, "10-parked")


def test_retry_a_parked_event_from_the_page(
    page: Page, shop_url: str, poison_file: Path
) -> None:
    with console_process(shop_url, poison_file) as console:
        assert console.token is not None
        page.goto(f"{console.url}/parked")
        retry = page.get_by_role("button", name="Retry order_audit")

        page.locator("#token").fill("not-the-token")
        retry.click()
        expect(page.locator("#error-message")).to_contain_text("wrong or missing token")
        snap(page, "11-wrong-token")

        page.goto(f"{console.url}/parked")
        page.locator("#token").fill(console.token)
        retry.click()  # the cause is not fixed yet: it fails again, and stays parked
        expect(page.locator("#notice")).to_contain_text("failed again")
        expect(page.locator('section[data-name="order_audit"]')).to_contain_text(
            f"Order-{POISON_ORDER}"
        )

        cure(poison_file)
        page.locator("#token").fill(console.token)
        retry.click()
        expect(page.locator("#notice")).to_have_text(
            "order_audit: applied 1 parked events; 0 still parked"
        )
        expect(page.locator("#none-parked")).to_be_visible()
        snap(page, "12-retried")

        page.locator("#nav-projections").click()
        expect(
            page.locator('#projections tr[data-name="order_audit"] [data-field="parked"]')
        ).to_have_text("0")
