"""The real aiohttp app on a real database (both backends), with a clock the test controls."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import create_app
from gateway.api.protocol import ProblemAppRunner
from gateway.config import Settings, load_settings

FULL_KEY = "full-access-key"
TX_KEY = "transactional-only-key"
OTHER_APP_KEY = "other-app-key"

IOS_TOKEN = "a" * 64
IOS_TOKEN_2 = "b" * 64
FCM_TOKEN = "fcm:token_" + "x" * 140


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "sandbox": {"enabled": True},
        "policy": {"default_timezone": "UTC"},
        "categories": {"order_shipped": "transactional", "weekly_sale": "promotional"},
        "apps": [{"id": "demo", "channels": {"transactional": "orders"}}, {"id": "other"}],
        "api_keys": [
            {
                "name": "full",
                "key_sha256": sha(FULL_KEY),
                "allowed_tiers": ["transactional", "behavioral", "promotional"],
                "scopes": ["*"],
            },
            {
                "name": "tx",
                "key_sha256": sha(TX_KEY),
                "allowed_tiers": ["transactional"],
                "scopes": ["*"],
            },
            {
                "name": "other",
                "key_sha256": sha(OTHER_APP_KEY),
                "allowed_tiers": ["transactional", "behavioral", "promotional"],
                "scopes": ["*"],
                "apps": ["other"],
            },
        ],
    }
    data.update(overrides)
    return load_settings(None, **data)


@pytest.fixture
def clock() -> FakeClock:
    # 12:00 UTC: daytime in UTC, so nothing is quiet unless a test chooses a zone
    return FakeClock(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


Client = TestClient  # type: ignore[type-arg]


class GatewayTestServer(TestServer):
    """aiohttp's test server on the runner ``pushgate serve`` uses, so what aiohttp's parser
    refuses is answered as in production. (``TestServer._make_runner`` is aiohttp's hook for
    this; ``tests/api/test_protocol_errors.py`` pins it.)"""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return ProblemAppRunner(self.app, **kwargs)


@pytest.fixture
async def client(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    clock: FakeClock,
) -> Client:
    app = create_app(settings, engine=engine, clock=clock)
    return await aiohttp_client(
        GatewayTestServer(app), headers={"Authorization": f"Bearer {FULL_KEY}"}
    )


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def register(client: Client, **fields: Any) -> dict[str, Any]:
    body = {"user_id": "u1", "app": "demo", "platform": "ios", "token": IOS_TOKEN, **fields}
    response = await client.post("/v1/devices", json=body)
    assert response.status in (200, 201), await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def row_count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608


async def assert_nothing_stored(engine: AsyncEngine) -> None:
    """No notification, device, preference or idempotency record was written."""
    for table in ("notifications", "devices", "preferences", "idempotency_records"):
        assert await row_count(engine, table) == 0, table
