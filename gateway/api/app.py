"""The aiohttp application factory.

``init_app(settings)`` wires the route table, the middlewares (metrics → problem+json → auth),
and the database engine as a cleanup context. Tests pass their own ``engine`` and ``clock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.api.auth import PUBLIC_PATHS, KeyRing, caller_of
from gateway.api.errors import problem_middleware
from gateway.api.routing import Handler, Route
from gateway.config import ApiKeyConfig, Settings
from gateway.db import create_engine, session_factory
from gateway.metrics import Metrics
from policies import PolicySettings

if TYPE_CHECKING:
    from gateway.intake import Intake

Clock = Callable[[], datetime]
Dispatch = Callable[[Sequence[str]], None]


def system_clock() -> datetime:
    return datetime.now(UTC)


def no_dispatch(_ids: Sequence[str]) -> None:
    """Without a worker in this process the deliveries wait for one that polls the database."""


SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
KEYRING = web.AppKey("keyring", KeyRing)
METRICS = web.AppKey("metrics", Metrics)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
POLICY = web.AppKey("policy", PolicySettings)
DISPATCH: web.AppKey[Dispatch] = web.AppKey("dispatch")
INTAKE: web.AppKey[Intake] = web.AppKey("intake")
CALLER = web.RequestKey("caller", ApiKeyConfig)  # the authenticated key of a request


def caller(request: web.Request) -> ApiKeyConfig:
    return request[CALLER]


def all_routes() -> list[Route]:
    from gateway.api import devices, notifications, preferences, system  # noqa: PLC0415

    return [*system.ROUTES, *devices.ROUTES, *preferences.ROUTES, *notifications.ROUTES]


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC_PATHS:
        request[CALLER] = caller_of(request, request.app[KEYRING])
    return await handler(request)


def init_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock = system_clock,
    metrics: Metrics | None = None,
    dispatch: Dispatch = no_dispatch,
) -> web.Application:
    """Build the HTTP application. Without ``engine``, one is made from the configuration and
    disposed of on shutdown."""
    from gateway.intake import Intake  # noqa: PLC0415
    from gateway.notifications import build_policy_settings  # noqa: PLC0415

    metrics = metrics or Metrics()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[metrics.middleware(), problem_middleware, auth_middleware],
    )
    app[SETTINGS] = settings
    app[KEYRING] = KeyRing.from_settings(settings)
    app[METRICS] = metrics
    app[CLOCK] = clock
    app[POLICY] = build_policy_settings(settings)
    app[DISPATCH] = dispatch

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = engine is None
        app[ENGINE] = engine or create_engine(settings.database)
        app[SESSIONS] = session_factory(app[ENGINE])
        app[INTAKE] = Intake(
            app[SESSIONS],
            policy=app[POLICY],
            clock=clock,
            retention=timedelta(hours=settings.retention.idempotency_hours),
        )
        app[INTAKE].start()
        yield
        await app[INTAKE].close()
        if owned:
            await app[ENGINE].dispose()

    app.cleanup_ctx.append(database)
    for route in all_routes():
        app.router.add_route(route.method, route.path, route.handler)
    return app
