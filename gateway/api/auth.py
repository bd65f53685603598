"""Bearer-key authentication: keys are stored as sha256 digests and compared in constant time."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.api.keys import CALLER
from gateway.api.routing import Handler, Route
from gateway.errors import Unauthorized
from gateway.services.access import Caller, KeyRing


def caller_of(request: web.Request, ring: KeyRing) -> Caller:
    """The API key of the request, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    key = ring.authenticate(presented.strip())
    if key is None:
        raise Unauthorized("the API key is not valid")
    return key


def auth_middleware(
    ring: KeyRing, routes: Iterable[Route], *, own_authentication: tuple[str, ...] = ()
) -> Middleware:
    """Every request but those to public routes must carry a valid key (401), and a key with
    one of the route's scopes (403 ``scope_required``). Paths under ``own_authentication``
    (the console, signed in by its session cookie) are left to their own check."""
    routes = list(routes)
    public = frozenset(route.path for route in routes if route.public)
    scopes = {(route.method, route.path): route.scopes for route in routes}
    prefixes = tuple(prefix.rstrip("/") for prefix in own_authentication)

    def authenticates_itself(path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in public and not authenticates_itself(request.path):
            caller = request[CALLER] = caller_of(request, ring)
            resource = request.match_info.route.resource
            needed = scopes.get((request.method, resource.canonical)) if resource else None
            if needed:
                caller.require(*needed)
        return await handler(request)

    return authenticate
