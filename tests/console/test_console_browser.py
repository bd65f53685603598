"""The console in a real browser: Playwright driving Debian's Chromium against the real app on
loopback, with the known traffic seeded (SQLite).

Chromium is found as ``chromium`` on the PATH or at /usr/bin/chromium; without it these tests
skip, unless ``PUSHGATE_TEST_BROWSER_REQUIRED=1`` (set by ``.ci/run``), where they fail. No
assertion is timed: Playwright's ``expect`` waits for what the page must come to show.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.console_traffic import LOOKUP_USER, KnownTraffic
from tests.console.conftest import DEMO_READER_KEY, READER_KEY, Client

BROWSER_REQUIRED = os.environ.get("PUSHGATE_TEST_BROWSER_REQUIRED") == "1"
CHROMIUM_CANDIDATES = ("chromium", "/usr/bin/chromium", "chromium-browser")


def chromium_path() -> str:
    """Debian's Chromium, or skip (fail where ``PUSHGATE_TEST_BROWSER_REQUIRED=1``)."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    message = "Chromium not found (apt-get install -y chromium)"
    if BROWSER_REQUIRED:
        pytest.fail(f"{message}; PUSHGATE_TEST_BROWSER_REQUIRED=1")
    pytest.skip(message)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Browser tests run on SQLite only; the HTTP tests cover both databases."""
    return f"sqlite+aiosqlite:///{tmp_path / 'pushgate.db'}"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright  # noqa: PLC0415
    except ImportError:
        if BROWSER_REQUIRED:
            pytest.fail("playwright is not installed; PUSHGATE_TEST_BROWSER_REQUIRED=1")
        pytest.skip("playwright is not installed")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def tab(browser: Any, console: Client) -> AsyncIterator[Any]:
    """A fresh browser context's page, its base URL the console's server (127.0.0.1)."""
    base = str(console.make_url("/")).rstrip("/")
    assert base.startswith("http://127.0.0.1:")
    context = await browser.new_context(base_url=base, viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    try:
        yield page
    finally:
        await context.close()


def expect(locator: Any) -> Any:
    from playwright.async_api import expect as playwright_expect  # noqa: PLC0415

    return playwright_expect(locator)


async def sign_in(page: Any, key: str = READER_KEY) -> None:
    await page.goto("/console/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url("/console/deferred")


async def test_each_page_shows_the_seeded_numbers_and_filters_change_them(
    tab: Any, traffic: KnownTraffic, tmp_path: Path
) -> None:
    page = tab
    await sign_in(page)
    await expect(page.locator("#deferred-total")).to_have_text(str(traffic.deferred_total))
    wave = page.locator("#wave")
    await expect(wave).to_contain_text(f"{traffic.wave_hour}:00 UTC")
    await expect(wave).to_contain_text(traffic.wave_zone)
    await expect(wave).to_contain_text(f"{traffic.wave_local} local time")
    await expect(page.locator("#deferred-chart .column")).to_have_count(24)
    await page.screenshot(path=tmp_path / "deferred.png", full_page=True)

    await page.get_by_label("App").select_option("other")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#deferred-total")).to_have_text(str(traffic.deferred_other))
    await expect(wave).to_contain_text(traffic.other_wave_zone)
    await page.get_by_label("App").select_option("")
    await page.get_by_label("Tier").select_option("promotional")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#deferred-total")).to_have_text(str(traffic.deferred_promotional))

    await page.get_by_role("link", name="Deliveries").click()
    apns_demo = page.locator('tr[data-provider="APNs"][data-app="demo"]')
    await expect(apns_demo.locator('[data-field="sent"]')).to_have_text("50")
    await expect(apns_demo.locator('[data-field="failed"]')).to_have_text("3")
    await expect(apns_demo.locator('[data-field="invalid_token"]')).to_have_text("2")
    await expect(apns_demo.locator('[data-field="retried"]')).to_have_text("7")
    await expect(apns_demo.locator('[data-field="p50"]')).to_have_text("≤ 0.25 s")
    await page.screenshot(path=tmp_path / "deliveries.png", full_page=True)
    await page.get_by_label("App").select_option("other")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator('tr[data-app="demo"]')).to_have_count(0)
    await expect(page.locator('tr[data-provider="APNs"][data-app="other"]')).to_have_count(1)

    await page.get_by_role("link", name="Tokens").click()
    demo_ios = page.locator('tr[data-app="demo"][data-platform="ios"]')
    await expect(demo_ios.locator('[data-field="active"]')).to_have_text("13")
    await expect(demo_ios.locator('[data-field="invalid"]')).to_have_text("4")
    today = page.locator('tr[data-day="2026-06-15"]')
    await expect(today.locator('[data-reason="Unregistered"]')).to_have_text("3")
    await page.screenshot(path=tmp_path / "tokens.png", full_page=True)

    await page.get_by_role("link", name="Permission funnel").click()
    await expect(page.locator('[data-rate="opt_in"]')).to_have_text("33.3%")
    await expect(page.locator('tr[data-step="value_moment"] td')).to_have_text("6")
    await page.get_by_label("Platform").select_option("android")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator('tr[data-step="value_moment"] td')).to_have_text("2")
    await expect(page.locator('[data-rate="opt_in"]')).to_have_text("\u2013")
    await page.get_by_label("Platform").select_option("")
    await page.get_by_label("From").fill("2026-06-01")
    await page.get_by_label("To").fill("2026-06-13")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator('tr[data-step="value_moment"] td')).to_have_text("0")
    await page.screenshot(path=tmp_path / "funnel.png", full_page=True)

    await page.get_by_role("link", name="User lookup").click()
    await page.get_by_label("User id").fill(LOOKUP_USER)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.locator("#user-devices tr[data-device]")).to_have_count(2)
    decisions = page.locator("#user-notifications td.decision")
    await expect(decisions).to_have_count(3)
    await expect(decisions.first).to_contain_text("Held back by quiet hours")
    await expect(page.locator("#user-history")).to_contain_text("Pacific/Auckland")
    await page.screenshot(path=tmp_path / "users.png", full_page=True)

    for name in ("deferred", "deliveries", "tokens", "funnel", "users"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0


async def test_a_key_limited_to_one_app_sees_only_that_app(tab: Any, traffic: KnownTraffic) -> None:
    page = tab
    await sign_in(page, DEMO_READER_KEY)
    await expect(page.locator("#deferred-total")).to_have_text(str(traffic.deferred_demo))
    await expect(page.locator('select[name="app"] option[value="other"]')).to_have_count(0)
    await page.goto("/console/deferred?app=other")
    await expect(page.locator("#page-error")).to_contain_text("may not use app 'other'")
    await page.goto("/console/tokens")
    await expect(page.locator('tr[data-app="other"]')).to_have_count(0)
    await expect(page.locator('tr[data-app="demo"]')).to_have_count(2)


async def test_signing_out_locks_the_pages_and_the_key_is_never_kept(
    tab: Any, traffic: KnownTraffic
) -> None:
    page = tab
    await sign_in(page)
    stored = await page.evaluate(
        "() => JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])"
    )
    assert READER_KEY not in stored
    assert "pushgate_console" not in stored  # HttpOnly: no script can read the session
    cookies = await page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("pushgate_console", True, "Strict")
    ]
    assert all(READER_KEY not in c["value"] for c in cookies)

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url("/console/login")
    assert await page.context.cookies() == []
    for name in ("deferred", "deliveries", "tokens", "funnel", "users"):
        await page.goto(f"/console/{name}")
        await expect(page).to_have_url("/console/login")
        await expect(page.get_by_label("API key")).to_be_visible()
    await page.go_back()
    await expect(page).to_have_url("/console/login")


async def test_a_key_without_users_read_is_told_why(tab: Any) -> None:
    page = tab
    await page.goto("/console/login")
    await page.get_by_label("API key").fill("console-sender-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#login-error")).to_contain_text("lacks the scope 'users:read'")


async def test_keyboard_alone_reaches_every_control(tab: Any, traffic: KnownTraffic) -> None:
    page = tab
    await page.goto("/console/login")
    # the key field has focus: type the key and press Enter
    await page.keyboard.type(READER_KEY)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url("/console/deferred")
    for path in (
        "/console/deferred",
        "/console/deliveries",
        "/console/tokens",
        "/console/funnel",
        f"/console/users?user_id={LOOKUP_USER}",
    ):
        await page.goto(path)
        controls = await page.evaluate(
            """() => {
                const found = [...document.querySelectorAll(
                    'a[href], button, select, input, textarea, [tabindex]:not([tabindex="-1"])'
                )].filter(element => element.offsetParent !== null || element.matches('.skip'));
                found.forEach((element, i) => element.setAttribute('data-kb', String(i)));
                return found.length;
            }"""
        )
        assert controls >= 8, path  # nav links, filters, sign out
        reached: set[str] = set()
        # a date field takes a Tab per part (day, month, year): allow a few per control
        for _ in range(controls * 4):
            if len(reached) == controls:
                break
            await page.keyboard.press("Tab")
            marker = await page.evaluate(
                "() => document.activeElement && document.activeElement.getAttribute('data-kb')"
            )
            if marker is not None:
                reached.add(marker)
        assert reached == {str(i) for i in range(controls)}, path
    # and a filter is applied from the keyboard alone
    await page.goto("/console/deferred")
    await page.get_by_label("App").focus()
    await page.keyboard.press("ArrowDown")  # "All apps" → "demo"
    await page.get_by_role("button", name="Apply").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#deferred-total")).to_have_text(str(traffic.deferred_demo))
