"""Sandbox mode: apps without credentials deliver to in-process simulators of each provider.

With ``[sandbox] enabled = true``, :func:`start_sandbox` starts each registered provider's
simulator (real HTTP/2 over TLS for APNs, HTTP v1 plus the OAuth2 token endpoint for FCM) and
returns the settings with each missing provider section pointed at it, so the whole data path,
real client libraries included, runs without an Apple or Google account.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from pydantic import BaseModel

from gateway.config import Settings
from gateway.providers.registry import PROVIDERS

log = logging.getLogger(__name__)


def apps_needing_sandbox(settings: Settings) -> list[str]:
    return [
        app.id
        for app in settings.apps
        if any(app.provider_config(name) is None for name in PROVIDERS)
    ]


@asynccontextmanager
async def start_sandbox(settings: Settings) -> AsyncIterator[Settings]:
    """Yield ``settings`` with simulators filled in where an app lacks credentials; the
    simulators stop when the context ends. Without sandbox mode, yields ``settings`` as is."""
    needing = apps_needing_sandbox(settings)
    if not settings.sandbox.enabled or not needing:
        yield settings
        return
    folder = Path(tempfile.mkdtemp(prefix="pushgate-sandbox-"))
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, folder, True)
        simulators = {}
        for name, provider in PROVIDERS.items():
            if any(app.provider_config(name) is None for app in settings.apps):
                simulators[name] = await stack.enter_async_context(provider.simulator())
        apps = []
        for app in settings.apps:
            sections: dict[str, BaseModel] = dict(app.providers)
            for name, simulator in simulators.items():
                if name not in sections:
                    sections[name] = PROVIDERS[name].sandbox_config(simulator, app.id, folder)
            apps.append(app.model_copy(update={"providers": sections}))
        log.warning(
            "SANDBOX MODE: apps %s deliver to the built-in simulators (%s), not to Apple or Google",
            ", ".join(needing),
            ", ".join(f"{name} {simulator.endpoint}" for name, simulator in simulators.items()),
        )
        yield settings.model_copy(update={"apps": apps})
