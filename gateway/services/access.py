"""Who is calling, and what that caller may touch.

A :class:`Caller` is an authenticated API key reduced to what the services check: its name
(recorded on what it creates), the tiers it may send and the apps it may see. The services
apply these limits in their own queries, so every entry point (HTTP API, CLI) gets them the
same way.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from gateway.config import ApiKeyConfig, Scope, Settings
from gateway.errors import Forbidden, UnknownApp, ValidationFailed
from policies.tiers import Tier


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated API key, or the operator at the command line."""

    name: str
    allowed_tiers: frozenset[Tier]
    apps: frozenset[str] | None
    """The apps this caller may see and touch; None: every app."""
    scopes: frozenset[Scope] = frozenset(Scope)

    @classmethod
    def from_key(cls, key: ApiKeyConfig) -> Caller:
        return cls(
            name=key.name,
            allowed_tiers=frozenset(key.allowed_tiers),
            apps=frozenset(key.apps) if key.apps is not None else None,
            scopes=key.granted_scopes,
        )

    @classmethod
    def operator(cls, name: str) -> Caller:
        """The operator at the command line: every tier, app and scope."""
        return cls(name=name, allowed_tiers=frozenset(Tier), apps=None)

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes

    def require(self, *scopes: Scope) -> None:
        """403 ``scope_required`` unless the caller holds one of ``scopes``."""
        if not any(scope in self.scopes for scope in scopes):
            needed = " or ".join(repr(scope.value) for scope in scopes)
            raise Forbidden(
                f"API key {self.name!r} lacks the scope {needed} this needs",
                code="scope_required",
            )

    def may_use_app(self, app: str) -> bool:
        return self.apps is None or app in self.apps

    def check_tier(self, tier: Tier) -> None:
        """403 ``tier_not_allowed`` unless this caller may send ``tier``."""
        if tier not in self.allowed_tiers:
            allowed = ", ".join(sorted(self.allowed_tiers))
            raise Forbidden(
                f"API key {self.name!r} may not send {tier} notifications (allowed: {allowed})",
                code="tier_not_allowed",
            )


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The configured keys, by digest: who a presented key is."""

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
        """The caller whose key is ``presented``, or None."""
        found = self.match(presented)
        return found[1] if found is not None else None

    def match(self, presented: str) -> tuple[str, Caller] | None:
        """The fingerprint (see :meth:`fingerprint`) and caller of the key ``presented``."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: tuple[bytes, Caller] | None = None
        # compare against every key, so the time taken says nothing about which one matched
        for stored, key in self.keys:
            if hmac.compare_digest(stored, digest):
                found = (stored, key)
        return (self.fingerprint(found[0]), found[1]) if found is not None else None

    def by_fingerprint(self, fingerprint: str) -> Caller | None:
        """The caller of the configured key with this fingerprint (None: no longer configured,
        or its secret was rotated)."""
        found: Caller | None = None
        for stored, key in self.keys:
            if hmac.compare_digest(self.fingerprint(stored), fingerprint):
                found = key
        return found

    @staticmethod
    def fingerprint(digest: bytes) -> str:
        """Names a key without holding anything that opens the API: the sha256 of its stored
        sha256, kept by console sessions so a rotated key no longer matches them."""
        return hashlib.sha256(digest).hexdigest()


def resolve_app(settings: Settings, requested: str | None, caller: Caller) -> str:
    """The app a request is for: the one named, or the only one configured; checked against
    the caller's apps (403 ``app_not_allowed``)."""
    if requested is None:
        if len(settings.apps) != 1:
            raise ValidationFailed("app is required when more than one app is configured")
        requested = settings.apps[0].id
    if settings.app(requested) is None:
        known = ", ".join(app.id for app in settings.apps) or "none"
        raise UnknownApp(f"app {requested!r} is not configured (configured apps: {known})")
    if not caller.may_use_app(requested):
        raise Forbidden(
            f"API key {caller.name!r} may not use app {requested!r}", code="app_not_allowed"
        )
    return requested
