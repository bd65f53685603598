"""The providers of a running gateway: one per (app, platform), built on first use."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.config import AppConfig, DeliveryConfig, Settings
from gateway.providers.base import Provider, PushMessage
from gateway.providers.registry import provider_for
from tokens.models import Platform
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)


class UnconfiguredProvider:
    """Stands in for a platform an app has no credentials for: every send fails, saying why,
    and the token is left alone."""

    def __init__(self, app: str, platform: Platform) -> None:
        section = provider_for(platform).name
        self.reason = f"no_credentials: app {app} has no [apps.{section}] section"

    async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
        return [DeliveryReport(Outcome.FAILED, reason=self.reason) for _ in messages]

    async def close(self) -> None:
        return None


class ProviderSet:
    """Builds providers lazily, inside the running loop (aioapns must be built there); called
    as ``providers(app_id, platform)`` by the delivery worker."""

    def __init__(self, apps: Sequence[AppConfig], delivery: DeliveryConfig) -> None:
        self.apps = {app.id: app for app in apps}
        self.delivery = delivery
        self._providers: dict[tuple[str, Platform], Provider] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ProviderSet:
        return cls(settings.apps, settings.delivery)

    def __call__(self, app_id: str, platform: Platform) -> Provider:
        key = (app_id, platform)
        provider = self._providers.get(key)
        if provider is None:
            provider = self._providers[key] = self._build(app_id, platform)
        return provider

    def _build(self, app_id: str, platform: Platform) -> Provider:
        app = self.apps.get(app_id)
        provider = provider_for(platform)
        config = app.provider_config(provider.name) if app is not None else None
        if app is None or config is None:
            log.error("app %s has no credentials for %s; its sends will fail", app_id, platform)
            return UnconfiguredProvider(app_id, platform)
        return provider(
            app.profile, config, send_timeout_seconds=self.delivery.send_timeout_seconds
        )

    async def close(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.close()
