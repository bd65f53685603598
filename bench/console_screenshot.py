"""The README's picture of the console: the deferred-queue page over a day of waves.

Run from the repository root (needs Chromium: ``apt-get install -y chromium``)::

    .venv/bin/python -m bench.console_screenshot docs/console-deferred.png

It starts the gateway on a throwaway SQLite database with the clock at 2026-06-15 12:00 UTC,
seeds the known traffic of :mod:`bench.console_traffic` and a day of quiet-hours waves, signs
in with Playwright driving Chromium, and saves the top of the deferred-queue page as a PNG. The
data and the clock are fixed, so the picture only changes when the page does.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import secrets
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright

from bench.console_traffic import seed_known_traffic, seed_waves
from gateway.api.app import init_app
from gateway.config import load_settings
from gateway.db import upgrade_database
from gateway.runtime import Role, build_runtime

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
VIEWPORT = {"width": 1100, "height": 660}


def _chromium() -> str:
    for candidate in ("chromium", "/usr/bin/chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    sys.exit("Chromium not found: apt-get install -y chromium")


async def take_screenshot(target: Path) -> None:
    key = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            None,
            database={"url": f"sqlite+aiosqlite:///{Path(folder) / 'console.db'}"},
            sandbox={"enabled": True},
            policy={"default_timezone": "UTC"},
            apps=[{"id": "demo"}, {"id": "other"}],
            api_keys=[
                {
                    "name": "operator",
                    "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                    "allowed_tiers": ["transactional", "behavioral", "promotional"],
                    "scopes": ["users:read"],
                }
            ],
        )
        async with build_runtime(settings, role=Role.API, clock=lambda: NOW) as runtime:
            await upgrade_database(runtime.engine)
            await seed_known_traffic(runtime.engine, runtime.services, NOW)
            await seed_waves(runtime.engine, NOW)
            runner = web.AppRunner(init_app(runtime), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            try:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=_chromium(), args=["--no-sandbox"], headless=True
                    )
                    page = await browser.new_page(
                        base_url=f"http://{host}:{port}", viewport=VIEWPORT
                    )
                    await page.goto("/console/login")
                    await page.get_by_label("API key").fill(key)
                    await page.get_by_role("button", name="Sign in").click()
                    await page.wait_for_url("**/console/deferred")
                    await page.screenshot(path=str(target))
                    await browser.close()
            finally:
                await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("target", type=Path, help="where to write the PNG")
    arguments = parser.parse_args()
    arguments.target.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(take_screenshot(arguments.target))
    print(f"{arguments.target}: {arguments.target.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
