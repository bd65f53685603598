"""Bearer-key authentication: keys are stored as sha256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from gateway.api.errors import Unauthorized
from gateway.config import ApiKeyConfig, Settings

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The configured keys, by digest."""

    keys: tuple[tuple[bytes, ApiKeyConfig], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(tuple((bytes.fromhex(key.resolved_sha256()), key) for key in settings.api_keys))

    def authenticate(self, presented: str) -> ApiKeyConfig | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found: ApiKeyConfig | None = None
        # compare against every key, so the time taken says nothing about which one matched
        for stored, key in self.keys:
            if hmac.compare_digest(stored, digest):
                found = key
        return found


def caller_of(request: web.Request, ring: KeyRing) -> ApiKeyConfig:
    """The API key of the request, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    key = ring.authenticate(presented.strip())
    if key is None:
        raise Unauthorized("the API key is not valid")
    return key
