"""What a request handler can reach: the services of the running gateway and the caller."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.runtime import Runtime
from gateway.services import Services
from gateway.services.access import Caller

SERVICES = web.AppKey("services", Services)
RUNTIME = web.AppKey("runtime", Runtime)  # the whole running gateway (readiness asks it)
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")
CALLER = web.RequestKey("caller", Caller)  # the authenticated key of a request


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def caller(request: web.Request) -> Caller:
    return request[CALLER]
