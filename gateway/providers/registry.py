"""Every provider the gateway can deliver through, by name: the one place a provider is
registered. Configuration (``[apps.<name>]``), sandbox mode, token validation, acceptance checks
and the delivery worker all look providers up here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gateway.providers.apns import ApnsProvider
from gateway.providers.base import PushProvider
from gateway.providers.fcm import FcmProvider
from tokens.models import Platform

PROVIDERS: Mapping[str, type[PushProvider]] = MappingProxyType(
    {provider.name: provider for provider in (ApnsProvider, FcmProvider)}
)

_BY_PLATFORM: Mapping[Platform, type[PushProvider]] = MappingProxyType(
    {provider.platform: provider for provider in PROVIDERS.values()}
)


def provider_for(platform: Platform | str) -> type[PushProvider]:
    """The provider class that delivers to ``platform``'s devices; ``KeyError`` if none does."""
    return _BY_PLATFORM[Platform(platform)]
