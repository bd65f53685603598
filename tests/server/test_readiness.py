"""``/readyz`` of a process that delivers: ready only while its delivery worker and scheduler
run (and the database answers); the worker-only role serves nothing but its health and
metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import init_app
from gateway.api.routes import WORKER_ROUTES
from gateway.runtime import Role, build_runtime
from tests.api.conftest import FULL_KEY, make_settings

Client = TestClient[web.Request, web.Application]


async def test_ready_only_while_the_worker_and_the_scheduler_run(
    engine: AsyncEngine, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = make_settings(engine.url.render_as_string(hide_password=False))
    async with build_runtime(settings, role=Role.WORKER, engine=engine) as runtime:
        assert runtime.worker is not None and runtime.jobs is not None
        client = await aiohttp_client(init_app(runtime))

        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {
            "status": "not ready",
            "database": "reachable",
            "delivery_worker": "stopped",
            "scheduler": "stopped",
            "reason": "the delivery worker is not running; the scheduler is not running",
        }

        scheduler = AsyncIOScheduler(timezone="UTC")
        runtime.jobs.schedule(scheduler)
        scheduler.start()
        worker_task = asyncio.create_task(runtime.worker.run())
        try:
            for _ in range(100):  # the task's first steps, no clock involved
                if runtime.worker.is_running:
                    break
                await asyncio.sleep(0)
            assert runtime.worker.is_running
            response = await client.get("/readyz")
            assert response.status == 200
            assert await response.json() == {
                "status": "ready",
                "database": "reachable",
                "delivery_worker": "running",
                "scheduler": "running",
            }
        finally:
            runtime.worker.stop()
            await worker_task
            await runtime.jobs.stop(scheduler)

        response = await client.get("/readyz")  # stopping: out of rotation
        assert response.status == 503
        body = await response.json()
        assert (body["delivery_worker"], body["scheduler"]) == ("stopped", "stopped")


async def test_the_worker_role_serves_health_and_metrics_only(
    engine: AsyncEngine, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = make_settings(engine.url.render_as_string(hide_password=False))
    assert {route.path for route in WORKER_ROUTES} == {"/healthz", "/readyz", "/metrics"}
    async with build_runtime(settings, role=Role.WORKER, engine=engine) as runtime:
        client = await aiohttp_client(
            init_app(runtime), headers={"Authorization": f"Bearer {FULL_KEY}"}
        )
        assert (await client.get("/healthz")).status == 200
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert "pushgate_queue_depth" in await metrics.text()  # a delivering process's figure
        for method, path in (
            ("GET", "/openapi.json"),
            ("POST", "/v1/notifications"),
            ("GET", "/v1/users/u1/devices"),
        ):
            response = await client.request(method, path)
            assert response.status == 404, path
            assert (await response.json())["code"] == "not_found"
