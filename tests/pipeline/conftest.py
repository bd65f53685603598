"""The whole delivery pipeline in one process: the real HTTP app, the real delivery worker and
scheduler jobs, the real APNs and FCM clients, talking to the simulators on loopback, on both
databases, under a clock the test moves.

Nothing runs in the background: a test drives the pipeline one step at a time
(``await pipeline.jobs.release()``, ``await pipeline.worker.run_round()``), so every assertion
is about a state the test produced, never about how long something took.

The fake clock starts two days ahead of the wall clock, at 14:00 UTC. It must not lag the
wall clock: the providers compute ``apns-expiration`` and FCM's ``ttl`` from the real time,
and FCM refuses to send a message whose ``expires_at`` has already passed.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col, select

from gateway.api.app import init_app
from gateway.config import Settings
from gateway.delivery.queue import DeliveryQueue
from gateway.delivery.worker import DeliveryWorker, ProviderLookup, RoundResult
from gateway.metrics import Metrics
from gateway.models import Delivery
from gateway.runtime import Role, Runtime, build_runtime
from gateway.scheduler import GatewayJobs
from gateway.simulators.apns import ApnsSimulator
from gateway.simulators.fcm import FcmSimulator
from tests.api.conftest import FULL_KEY, FakeClock, make_settings, sha

APP = "demo"
TOPIC = "com.example.demo"
PROJECT = "pushgate-pipeline"
TOKYO = "Asia/Tokyo"  # no DST: 14:00 UTC is 23:00 there on every day of the year

Client = TestClient[web.Request, web.Application]

# Small, round numbers so tests can reason about them; everything else is the default.
DELIVERY = {
    "max_attempts": 4,
    "backoff_base_seconds": 1.0,
    "backoff_max_seconds": 60.0,
    "lease_seconds": 60,
    "breaker_failure_threshold": 3,
    "breaker_reset_seconds": 30.0,
}
MAX_ROUNDS = 20


@functools.cache
def service_account_key() -> rsa.RSAPrivateKey:
    """One RSA key for every test's service account: generating 2048-bit keys is slow."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ios_token() -> str:
    return secrets.token_hex(32)


def android_token() -> str:
    return f"{secrets.token_urlsafe(8)}:APA91b{secrets.token_urlsafe(48)}"


@dataclass
class Pipeline:
    """One gateway in one process, and the handles a test drives it with."""

    client: Client
    clock: FakeClock
    runtime: Runtime
    apns: ApnsSimulator
    fcm: FcmSimulator
    extra_workers: list[DeliveryWorker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.runtime.context.sessions

    @property
    def metrics(self) -> Metrics:
        return self.runtime.metrics

    @property
    def providers(self) -> ProviderLookup:
        assert self.runtime.providers is not None
        return self.runtime.providers

    @property
    def worker(self) -> DeliveryWorker:
        assert self.runtime.worker is not None
        return self.runtime.worker

    @property
    def jobs(self) -> GatewayJobs:
        assert self.runtime.jobs is not None
        return self.runtime.jobs

    # -- the HTTP API --------------------------------------------------------------------------

    async def register(
        self, user_id: str = "u1", platform: str = "ios", **fields: Any
    ) -> dict[str, Any]:
        token = ios_token() if platform == "ios" else android_token()
        body = {"user_id": user_id, "app": APP, "platform": platform, "token": token, **fields}
        response = await self.client.post("/v1/devices", json=body)
        assert response.status in (200, 201), await response.text()
        device: dict[str, Any] = await response.json()
        return device

    async def send(self, **fields: Any) -> dict[str, Any]:
        body = {"user_id": "u1", "app": APP, "title": "Hello", "body": "there", **fields}
        response = await self.client.post("/v1/notifications", json=body)
        assert response.status == 202, await response.text()
        notification: dict[str, Any] = await response.json()
        return notification

    async def notification(self, notification_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/notifications/{notification_id}")
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def devices(self, user_id: str = "u1") -> dict[str, dict[str, Any]]:
        """The user's devices by token."""
        response = await self.client.get(f"/v1/users/{user_id}/devices")
        assert response.status == 200, await response.text()
        return {device["token"]: device for device in (await response.json())["devices"]}

    async def preferences(self, user_id: str = "u1", **fields: Any) -> None:
        response = await self.client.patch(f"/v1/users/{user_id}/preferences", json=fields)
        assert response.status == 200, await response.text()

    async def metrics_text(self) -> str:
        response = await self.client.get("/metrics")
        assert response.status == 200
        return await response.text()

    # -- driving the pipeline ------------------------------------------------------------------

    async def deliver(self, worker: DeliveryWorker | None = None) -> RoundResult:
        """Run delivery rounds at the current instant until one claims nothing; returns the
        totals. Bounded: a pipeline that keeps claiming the same work fails the test."""
        worker = worker or self.worker
        total = RoundResult()
        for _ in range(MAX_ROUNDS):
            result = await worker.run_round()
            if not result.claimed:
                return total
            total.claimed += result.claimed
            total.waiting_on_breaker += result.waiting_on_breaker
            total.finished_notifications += result.finished_notifications
            for outcome, count in result.outcomes.items():
                total.outcomes[outcome] += count
        raise AssertionError(f"still claiming work after {MAX_ROUNDS} rounds")

    async def release_and_deliver(self) -> int:
        released = await self.jobs.release()
        await self.deliver()
        return released

    async def next_attempt_at(self, notification_id: str) -> list[datetime]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(Delivery.next_attempt_at).where(
                    col(Delivery.notification_id) == notification_id
                )
            )
            return list(rows.scalars())

    async def pending_deliveries(self) -> int:
        async with self.sessions() as session:
            count = await session.execute(
                select(sa.func.count())
                .select_from(Delivery)
                .where(col(Delivery.status) == "pending")
            )
            return int(count.scalar_one())

    async def advance_to_next_attempt(self) -> None:
        """Move the clock to the earliest pending delivery's next attempt."""
        async with self.sessions() as session:
            earliest = await session.execute(
                select(sa.func.min(Delivery.next_attempt_at)).where(
                    col(Delivery.status) == "pending"
                )
            )
            when = earliest.scalar_one()
        assert when is not None, "nothing is pending"
        when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        self.clock.now = max(self.clock.now, when)

    def new_worker(self, owner: str, providers: ProviderLookup | None = None) -> DeliveryWorker:
        """A second worker on the same database, clock and providers (another process)."""
        queue = DeliveryQueue(
            self.sessions,
            owner=owner,
            skip_locked=not self.settings.database.is_sqlite,
            lease_seconds=self.settings.delivery.lease_seconds,
        )
        worker = DeliveryWorker(
            queue,
            providers or self.providers,
            self.settings.delivery,
            clock=self.clock,
            metrics=self.metrics,
        )
        self.extra_workers.append(worker)
        return worker

    async def close_extra_workers(self) -> None:
        for worker in self.extra_workers:
            await worker.recorder.close()


def start_instant() -> datetime:
    """14:00 UTC, two days ahead of the wall clock (see the module docstring)."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    return datetime.combine(day, time(14, 0), tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_instant())


@dataclass
class Simulators:
    apns: ApnsSimulator
    fcm: FcmSimulator


@pytest.fixture
async def simulators() -> AsyncIterator[Simulators]:
    async with ApnsSimulator() as apns, FcmSimulator() as fcm:
        yield Simulators(apns, fcm)


StartPipeline = Callable[..., Awaitable[Pipeline]]


@pytest.fixture
async def start_pipeline(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    clock: FakeClock,
    simulators: Simulators,
    tmp_path: Path,
) -> AsyncIterator[StartPipeline]:
    """``await start_pipeline(**delivery_overrides)`` builds the gateway; it is torn down
    (provider connections closed) when the test ends."""
    async with AsyncExitStack() as stack:
        apns, fcm = simulators.apns, simulators.fcm
        database_url = engine.url.render_as_string(hide_password=False)

        async def start(**delivery: Any) -> Pipeline:
            app = {
                "id": APP,
                "channels": {"transactional": "orders"},
                "apns": apns.apns_config(TOPIC),
                "fcm": fcm.fcm_config(tmp_path, PROJECT, key=service_account_key()),
            }
            settings = make_settings(
                database_url,
                sandbox={"enabled": False},
                apps=[app],
                api_keys=[
                    {
                        "name": "full",
                        "key_sha256": sha(FULL_KEY),
                        "allowed_tiers": ["transactional", "behavioral", "promotional"],
                        "scopes": ["*"],
                    }
                ],
                delivery={**DELIVERY, **delivery},
            )
            runtime = await stack.enter_async_context(
                build_runtime(
                    settings,
                    role=Role.ALL,
                    engine=engine,
                    clock=clock,
                    worker_owner="worker-a",
                )
            )
            client = await aiohttp_client(
                init_app(runtime), headers={"Authorization": f"Bearer {FULL_KEY}"}
            )
            pipeline = Pipeline(client, clock, runtime, apns, fcm)
            stack.push_async_callback(pipeline.close_extra_workers)
            return pipeline

        yield start


@pytest.fixture
async def pipeline(start_pipeline: StartPipeline) -> Pipeline:
    return await start_pipeline()
