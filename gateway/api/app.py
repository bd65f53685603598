"""The aiohttp application: the route table, the middlewares (metrics → problem+json → auth →
inputs), and the services of a running gateway.

:func:`init_app` serves a runtime someone else built and owns (``pushgate serve``, the
pipeline tests); :func:`create_app` builds its own for the application's lifetime (the API
tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway.api.auth import KeyRing, auth_middleware
from gateway.api.inputs import input_middleware
from gateway.api.keys import OPENAPI, SERVICES
from gateway.api.openapi import build_openapi
from gateway.api.problems import problem_middleware
from gateway.api.routes import ROUTES
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.runtime import Role, Runtime, build_runtime


def _application(settings: Settings, metrics: Metrics) -> web.Application:
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            metrics.middleware(),
            problem_middleware,
            auth_middleware(KeyRing.from_settings(settings), ROUTES),
            input_middleware(ROUTES),
        ],
    )
    app[OPENAPI] = build_openapi(ROUTES)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    return app


def init_app(runtime: Runtime) -> web.Application:
    """The HTTP API over ``runtime``'s services."""
    app = _application(runtime.settings, runtime.metrics)
    app[SERVICES] = runtime.services
    return app


def create_app(settings: Settings, *, role: Role = Role.API, **runtime: Any) -> web.Application:
    """The HTTP API with a runtime of its own, built at start-up and closed at shutdown;
    ``runtime`` takes :func:`~gateway.runtime.build_runtime`'s keyword arguments."""
    metrics = runtime.pop("metrics", None) or Metrics()
    app = _application(settings, metrics)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with build_runtime(settings, role=role, metrics=metrics, **runtime) as built:
            app[SERVICES] = built.services
            yield

    app.cleanup_ctx.append(lifetime)
    return app
