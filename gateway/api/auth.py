"""Bearer-key authentication: keys are stored as sha256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.api.keys import CALLER
from gateway.api.routing import Handler, Route
from gateway.config import Settings
from gateway.errors import Unauthorized
from gateway.services.access import Caller


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The configured keys, by digest."""

    keys: tuple[tuple[bytes, Caller], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(
            tuple(
                (bytes.fromhex(key.resolved_sha256()), Caller.from_key(key))
                for key in settings.api_keys
            )
        )

    def authenticate(self, presented: str) -> Caller | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        # compare against every key, so the time taken says nothing about which one matched
        for stored, key in self.keys:
            if hmac.compare_digest(stored, digest):
                found = key
        return found


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


def auth_middleware(ring: KeyRing, routes: Iterable[Route]) -> Middleware:
    """Every request but those to public routes must carry a valid key (401), and a key with
    one of the route's scopes (403 ``scope_required``)."""
    routes = list(routes)
    public = frozenset(route.path for route in routes if route.public)
    scopes = {(route.method, route.path): route.scopes for route in routes}

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in public:
            caller = request[CALLER] = caller_of(request, ring)
            resource = request.match_info.route.resource
            needed = scopes.get((request.method, resource.canonical)) if resource else None
            if needed:
                caller.require(*needed)
        return await handler(request)

    return authenticate
