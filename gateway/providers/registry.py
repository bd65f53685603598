"""One provider per (app, platform), built from the configuration on first use."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.config import AppConfig, DeliveryConfig, Settings
from gateway.providers.apns import ApnsProvider
from gateway.providers.base import Platform, Provider, PushMessage
from gateway.providers.fcm import FcmProvider
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)


class UnconfiguredProvider:
    """Stands in for a platform an app has no credentials for: every send fails, saying why,
    and the token is left alone."""

    def __init__(self, app: str, platform: Platform) -> None:
        section = "apns" if platform == "ios" else "fcm"
        self.reason = f"no_credentials: app {app} has no [apps.{section}] section"

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        return [DeliveryReport(Outcome.FAILED, reason=self.reason) for _ in messages]

    async def close(self) -> None:
        return None


class ProviderRegistry:
    """Builds providers lazily, inside the running loop (aioapns must be built there)."""

    def __init__(self, apps: Sequence[AppConfig], delivery: DeliveryConfig) -> None:
        self.apps = {app.id: app for app in apps}
        self.delivery = delivery
        self._providers: dict[tuple[str, Platform], Provider] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderRegistry:
        return cls(settings.apps, settings.delivery)

    def __call__(self, app_id: str, platform: Platform) -> Provider:
        key = (app_id, platform)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._build(app_id, platform)
            self._providers[key] = provider
        return provider

    def _build(self, app_id: str, platform: Platform) -> Provider:
        app = self.apps.get(app_id)
        timeout = self.delivery.send_timeout_seconds
        if app is not None and platform == "ios" and app.apns is not None:
            return ApnsProvider(app, send_timeout_seconds=timeout)
        if app is not None and platform == "android" and app.fcm is not None:
            return FcmProvider(app, send_timeout_seconds=timeout)
        log.error("app %s has no credentials for %s; its sends will fail", app_id, platform)
        return UnconfiguredProvider(app_id, platform)

    async def close(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.close()
