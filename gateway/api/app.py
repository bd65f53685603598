"""The aiohttp application: the route table, the middlewares (request id → metrics →
problem+json → auth → inputs), and the services of a running gateway.

:func:`init_app` serves a runtime someone else built and owns (``pushgate serve``, the
pipeline tests); :func:`create_app` builds its own for the application's lifetime (the API
tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway.api.auth import auth_middleware
from gateway.api.inputs import input_middleware
from gateway.api.keys import OPENAPI, RUNTIME, SERVICES
from gateway.api.openapi import build_openapi
from gateway.api.problems import problem_middleware
from gateway.api.request_ids import request_id_middleware
from gateway.api.routes import ROUTES, WORKER_ROUTES
from gateway.api.routing import Route
from gateway.config import Settings
from gateway.console import CONSOLE_PREFIX, CONSOLE_RUNTIME, mount_console
from gateway.metrics import Metrics
from gateway.runtime import Role, Runtime, build_runtime
from gateway.services.access import KeyRing


def _application(
    settings: Settings, metrics: Metrics, routes: tuple[Route, ...] = ROUTES
) -> web.Application:
    """The API's routes; where it accepts notifications (``routes`` is :data:`ROUTES`), the
    operator console too, mounted beside the route table: it renders HTML, signs in with its
    own session cookie and stays out of ``/openapi.json``."""
    with_console = routes is ROUTES
    keys = KeyRing.from_settings(settings)
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[
            request_id_middleware,
            metrics.middleware(),
            problem_middleware,
            auth_middleware(
                keys,
                routes,
                own_authentication=(CONSOLE_PREFIX,) if with_console else (),
            ),
            input_middleware(routes),
        ],
    )
    app[OPENAPI] = build_openapi(routes)
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    if with_console:
        mount_console(app, keys)
    return app


def init_app(runtime: Runtime) -> web.Application:
    """The HTTP side of ``runtime``: the API for a role that accepts notifications; for the
    worker-only role, its health checks and metrics alone."""
    routes = ROUTES if runtime.role.accepts else WORKER_ROUTES
    app = _application(runtime.settings, runtime.metrics, routes)
    app[SERVICES] = runtime.services
    app[RUNTIME] = app[CONSOLE_RUNTIME] = runtime
    return app


def create_app(settings: Settings, *, role: Role = Role.API, **runtime: Any) -> web.Application:
    """The HTTP API with a runtime of its own, built at start-up and closed at shutdown;
    ``runtime`` takes :func:`~gateway.runtime.build_runtime`'s keyword arguments."""
    metrics = runtime.pop("metrics", None) or Metrics(delivers=role.delivers)
    app = _application(settings, metrics)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with build_runtime(settings, role=role, metrics=metrics, **runtime) as built:
            app[SERVICES] = built.services
            app[RUNTIME] = app[CONSOLE_RUNTIME] = built
            yield

    app.cleanup_ctx.append(lifetime)
    return app
