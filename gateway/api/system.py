"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.keys import OPENAPI, RUNTIME, services
from gateway.api.routing import json_response


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = await request.app[RUNTIME].readiness()
    if readiness.reason is None:
        return json_response({"status": "ready", **readiness.parts})
    body = {"status": "not ready", **readiness.parts, "reason": readiness.reason}
    return json_response(body, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = services(request).context.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])
