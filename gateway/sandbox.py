"""Sandbox mode: apps without credentials deliver to in-process APNs and FCM simulators.

With ``[sandbox] enabled = true``, :func:`start_sandbox` starts the simulators (real HTTP/2 over
TLS for APNs, HTTP v1 plus the OAuth2 token endpoint for FCM) and returns the settings with
each credential-less app pointed at them, so the whole data path, real client libraries
included, runs without an Apple or Google account.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from gateway.config import Settings
from gateway.simulators.apns import ApnsSimulator
from gateway.simulators.fcm import FcmSimulator

log = logging.getLogger(__name__)


def apps_needing_sandbox(settings: Settings) -> list[str]:
    return [app.id for app in settings.apps if app.apns is None or app.fcm is None]


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
        apns = await stack.enter_async_context(ApnsSimulator())
        fcm = await stack.enter_async_context(FcmSimulator())
        apps = []
        for app in settings.apps:
            updates: dict[str, object] = {}
            if app.apns is None:
                updates["apns"] = apns.apns_config(topic=f"sandbox.{app.id}")
            if app.fcm is None:
                updates["fcm"] = fcm.fcm_config(folder, project_id=f"sandbox-{app.id}")
            apps.append(app.model_copy(update=updates))
        log.warning(
            "SANDBOX MODE: apps %s deliver to the built-in simulators (APNs %s, FCM %s), "
            "not to Apple or Google",
            ", ".join(needing),
            apns.endpoint,
            fcm.endpoint,
        )
        yield settings.model_copy(update={"apps": apps})
