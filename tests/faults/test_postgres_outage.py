"""PostgreSQL going away under traffic: its backends terminated, then connections refused.

Callers only ever get 202 (stored) or 503 unavailable with Retry-After (retry later); no
notification answered 202 is lost, and every one of them ends with a final status once the
database is back, with no restart of the gateway.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.api.app import init_app
from gateway.config import DatabaseConfig
from gateway.db import create_engine, upgrade_database
from gateway.models import PENDING_NOTIFICATION_STATUSES
from gateway.runtime import Role, build_runtime
from gateway.simulators.apns import ApnsSimulator
from tests.api.conftest import FULL_KEY, make_settings, sha
from tests.conftest import (
    POSTGRES_URL,
    drop_postgres_schema,
    make_postgres_schema_url,
    require_postgres,
)
from tests.faults.proxy import TcpProxy
from tests.multiprocess.harness import wait_until

pytestmark = pytest.mark.postgres

USERS = 20
SENDERS = 16
ACCEPTED_PER_PHASE = 150
REFUSALS_WANTED = 40  # 503s seen while connections are refused before letting them through

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, TcpProxy]]:
    """A fresh schema, reached through a proxy the test can cut."""
    await require_postgres()
    url, schema = await make_postgres_schema_url()
    engine = create_engine(DatabaseConfig(url=url))
    await upgrade_database(engine)
    await engine.dispose()
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    try:
        yield url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), proxy
    finally:
        await proxy.close()
        await drop_postgres_schema(schema)


class Traffic:
    """Senders posting notifications until stopped; every answer is kept."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.statuses: Counter[int] = Counter()
        self.accepted: list[str] = []
        self.without_retry_after = 0
        self._stopping = asyncio.Event()
        self._answered = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send(index)) for index in range(SENDERS)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Wait until the answers so far satisfy ``condition`` (what: for the failure)."""
        try:
            async with asyncio.timeout(120), self._answered:  # a guard against a hang
                await self._answered.wait_for(condition)
        except TimeoutError:
            raise AssertionError(f"traffic never reached: {what}") from None

    async def _send(self, index: int) -> None:
        number = 0
        while not self._stopping.is_set():
            number += 1
            body = {
                "user_id": f"user-{(index + number) % USERS}",
                "tier": "transactional",
                "title": "Your order shipped",
                "body": f"#{index}-{number}",
            }
            try:
                async with self.client.post("/v1/notifications", json=body) as response:
                    self.statuses[response.status] += 1
                    if response.status == 202:
                        self.accepted.append((await response.json())["id"])
                    elif response.status == 503 and "Retry-After" not in response.headers:
                        self.without_retry_after += 1
                    else:
                        await response.read()
            except aiohttp.ClientError:
                self.statuses[0] += 1
            async with self._answered:
                self._answered.notify_all()


async def terminate_backends(ports: list[int]) -> int:
    admin = create_engine(DatabaseConfig(url=POSTGRES_URL))
    try:
        async with admin.begin() as connection:
            result = await connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE client_port = ANY(:ports)"
                ),
                {"ports": ports},
            )
            return int(result.scalar_one())
    finally:
        await admin.dispose()


async def not_final(url: str, ids: list[str]) -> int:
    engine = create_engine(DatabaseConfig(url=url))
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT id, status FROM notifications WHERE id = ANY(:ids)"), {"ids": ids}
            )
            found = dict(rows.all())
    finally:
        await engine.dispose()
    missing = set(ids) - set(found)
    assert not missing, f"{len(missing)} notifications answered 202 are lost"
    return sum(status in PENDING_NOTIFICATION_STATUSES for status in found.values())


async def test_an_outage_answers_503_loses_nothing_and_recovers(
    database: tuple[str, TcpProxy],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    proxied_url, proxy = database
    direct_url = proxied_url.replace(f"127.0.0.1:{proxy.port}", "127.0.0.1:5432")
    async with ApnsSimulator() as apns:
        settings = make_settings(
            proxied_url,
            sandbox={"enabled": False},
            apps=[{"id": "demo", "apns": apns.apns_config("com.example.demo")}],
            api_keys=[
                {
                    "name": "full",
                    "key_sha256": sha(FULL_KEY),
                    "allowed_tiers": ["transactional"],
                    "scopes": ["*"],
                }
            ],
            database={"url": proxied_url, "pool_size": 4},
            delivery={"lease_seconds": 5, "poll_interval_seconds": 0.1},
        )
        async with build_runtime(settings, role=Role.ALL) as runtime:
            assert runtime.worker is not None
            worker = asyncio.create_task(runtime.worker.run())
            client = await aiohttp_client(
                init_app(runtime), headers={"Authorization": f"Bearer {FULL_KEY}"}
            )
            for user in range(USERS):
                device = {
                    "user_id": f"user-{user}",
                    "platform": "ios",
                    "token": secrets.token_hex(32),
                }
                assert (await client.post("/v1/devices", json=device)).status == 201

            traffic = Traffic(client)
            traffic.start()
            await traffic.until(lambda: len(traffic.accepted) >= ACCEPTED_PER_PHASE, "warm")

            terminated = await terminate_backends(proxy.upstream_ports())
            assert terminated > 0
            target = len(traffic.accepted) + ACCEPTED_PER_PHASE
            await traffic.until(lambda: len(traffic.accepted) >= target, "after termination")

            await proxy.refuse()
            refused_from = traffic.statuses[503]
            await traffic.until(
                lambda: traffic.statuses[503] - refused_from >= REFUSALS_WANTED, "refusals"
            )
            await proxy.accept()
            target = len(traffic.accepted) + ACCEPTED_PER_PHASE
            await traffic.until(lambda: len(traffic.accepted) >= target, "recovery")
            await traffic.stop()

            async def all_final() -> bool:
                return await not_final(direct_url, traffic.accepted) == 0

            await wait_until(all_final, within_seconds=120, what="every notification final")
            runtime.worker.stop()
            await worker

    statuses: dict[int, Any] = dict(traffic.statuses)
    assert set(statuses) <= {202, 503}, statuses
    assert statuses.get(503, 0) >= REFUSALS_WANTED
    assert traffic.without_retry_after == 0
    print(
        f"\npostgresql outage: {sum(statuses.values())} requests, {statuses.get(202, 0)} "
        f"accepted, {statuses.get(503, 0)} answered 503, 0 other 5xx, {terminated} backends "
        f"terminated, 0 lost, all {len(traffic.accepted)} final"
    )
