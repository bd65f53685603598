"""FCM test fixtures: a simulator on loopback and a provider pointed at it.

Imported by the ``test_fcm_*`` modules (not a conftest, so the APNs tests stay independent).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.providers.base import AppProfile, PushMessage
from gateway.providers.fcm import FcmConfig, FcmProvider
from gateway.simulators.fcm import FcmSimulator
from policies.tiers import Tier

PROJECT = "pushgate-test"
APP_ID = "shop-android"
CHANNELS = {Tier.TRANSACTIONAL: "orders", Tier.PROMOTIONAL: "offers"}


def new_token() -> str:
    """A registration token shaped like FCM's (instance id, colon, APA91 blob)."""
    return f"{secrets.token_urlsafe(8)}:APA91b{secrets.token_urlsafe(48)}"


def make_message(token: str | None = None, **fields: Any) -> PushMessage:
    defaults: dict[str, Any] = {
        "token": token or new_token(),
        "tier": Tier.TRANSACTIONAL,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
        "title": "Your order shipped",
        "body": "It arrives Tuesday",
    }
    return PushMessage(**{**defaults, **fields})


@functools.cache
def service_account_key() -> rsa.RSAPrivateKey:
    """One RSA key for every test's service account: generating 2048-bit keys is slow."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass(frozen=True)
class FcmApp:
    """An app and its ``[apps.fcm]`` section: what an :class:`FcmProvider` is built from."""

    profile: AppProfile
    config: FcmConfig

    def provider(self, **options: Any) -> FcmProvider:
        return FcmProvider(self.profile, self.config, **options)


def app_for(simulator: FcmSimulator, folder: Path, **fcm: Any) -> FcmApp:
    """An app whose ``[apps.fcm]`` points at ``simulator`` with a new service account."""
    config = simulator.fcm_config(folder, PROJECT, key=service_account_key())
    return FcmApp(
        AppProfile(id=APP_ID, channels=CHANNELS), FcmConfig.model_validate({**config, **fcm})
    )


@pytest.fixture(name="fcm_sim")
async def fcm_sim_fixture() -> AsyncIterator[FcmSimulator]:
    async with FcmSimulator() as simulator:
        yield simulator


@pytest.fixture(name="fcm_app")
def fcm_app_fixture(fcm_sim: FcmSimulator, tmp_path: Path) -> FcmApp:
    return app_for(fcm_sim, tmp_path)


@pytest.fixture(name="fcm_provider")
async def fcm_provider_fixture(fcm_app: FcmApp) -> AsyncIterator[FcmProvider]:
    provider = fcm_app.provider(send_timeout_seconds=5.0)
    try:
        yield provider
    finally:
        await provider.close()


@contextmanager
def simulator_in_thread() -> Iterator[FcmSimulator]:
    """An :class:`FcmSimulator` serving from its own event loop in a daemon thread, so a test can
    drive clients from several loops of its own while the simulator stays up."""
    loop = asyncio.new_event_loop()
    simulator = FcmSimulator()
    thread = threading.Thread(target=loop.run_forever, name="fcm-simulator", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(simulator.start(), loop).result(timeout=10)
        yield simulator
    finally:
        asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
