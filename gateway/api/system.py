"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.app import ENGINE, METRICS, all_routes
from gateway.api.routing import Route
from gateway.db import database_reachable


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if await database_reachable(request.app[ENGINE]):
        return web.json_response({"status": "ready", "database": "reachable"})
    return web.json_response({"status": "not ready", "database": "unreachable"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(_request: web.Request) -> web.Response:
    from gateway.api.openapi import build_openapi  # noqa: PLC0415

    return web.json_response(build_openapi(all_routes()))


ROUTES = [
    Route("GET", "/healthz", healthz, "Liveness: the process answers", public=True),
    Route("GET", "/readyz", readyz, "Readiness: the database is reachable", public=True),
    Route("GET", "/metrics", metrics, "Prometheus metrics", content_type="text/plain"),
    Route("GET", "/openapi.json", openapi, "This OpenAPI 3.1 document"),
]
