"""The console on a real app and database: keys with and without ``users:read``, one limited
to one app, and the known traffic of :mod:`bench.console_traffic`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.console_traffic import KnownTraffic, seed_known_traffic
from gateway.api.app import create_app, init_app
from gateway.api.keys import SERVICES
from gateway.config import Settings
from gateway.runtime import Role, Runtime, build_runtime
from tests.api.conftest import FakeClock, GatewayTestServer, make_settings, sha

READER_KEY = "console-reader-key"
DEMO_READER_KEY = "console-demo-reader-key"
SENDER_KEY = "console-sender-key"
ALL_TIERS = ["transactional", "behavioral", "promotional"]

Client = TestClient  # type: ignore[type-arg]


def console_settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        api_keys=[
            {
                "name": "reader",
                "key_sha256": sha(READER_KEY),
                "allowed_tiers": ALL_TIERS,
                "scopes": ["users:read"],
            },
            {
                "name": "demo-reader",
                "key_sha256": sha(DEMO_READER_KEY),
                "allowed_tiers": ALL_TIERS,
                "scopes": ["users:read"],
                "apps": ["demo"],
            },
            {
                "name": "sender",
                "key_sha256": sha(SENDER_KEY),
                "allowed_tiers": ALL_TIERS,
                "scopes": ["send"],
            },
        ],
    )


@pytest.fixture
def clock() -> FakeClock:
    # 12:00 UTC, the hour the known traffic is laid out around
    return FakeClock(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return console_settings(database_url)


@pytest.fixture
async def console(
    aiohttp_client: Callable[..., Awaitable[Client]],
    engine: AsyncEngine,
    settings: Settings,
    clock: FakeClock,
) -> Client:
    """A browser-like client: no API key header, a cookie jar."""
    app = create_app(settings, engine=engine, clock=clock)
    return await aiohttp_client(GatewayTestServer(app))


@pytest.fixture
async def traffic(console: Client, engine: AsyncEngine, clock: FakeClock) -> KnownTraffic:
    return await seed_known_traffic(engine, console.app[SERVICES], clock())


async def sign_in(client: Client, key: str = READER_KEY) -> Any:
    response = await client.post("/console/login", data={"key": key}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return response


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text
    return text


def cell(text: str, pattern: str) -> str:
    """The text of the first element whose opening tag matches ``pattern``."""
    found = re.search(pattern + r"[^>]*>([^<]*)<", text)
    assert found is not None, pattern
    return found.group(1).strip()


@pytest.fixture
async def delivering_console(
    aiohttp_client: Callable[..., Awaitable[Client]],
    engine: AsyncEngine,
    settings: Settings,
    clock: FakeClock,
) -> AsyncIterator[tuple[Client, Runtime]]:
    """The console of a process that delivers (its worker built, not running): the breakers
    and the mass-invalidation guard it shows are this runtime's."""
    async with build_runtime(settings, role=Role.ALL, engine=engine, clock=clock) as runtime:
        yield await aiohttp_client(GatewayTestServer(init_app(runtime))), runtime
