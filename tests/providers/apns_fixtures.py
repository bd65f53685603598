"""APNs test fixtures: a simulator on loopback and a provider pointed at it.

Imported by the ``test_apns_*`` modules (not a conftest, so the FCM tests stay independent).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aioapns import APNs
from aioapns.connection import APNsProductionClientProtocol

from gateway.providers.apns import ApnsConfig, ApnsProvider
from gateway.providers.base import AppProfile, PushMessage
from gateway.simulators.apns import ApnsSimulator
from policies.tiers import Tier

TOPIC = "com.example.pushgate"


def new_token() -> str:
    return secrets.token_hex(32)


def make_message(token: str | None = None, **fields: Any) -> PushMessage:
    defaults: dict[str, Any] = {
        "token": token or new_token(),
        "tier": Tier.TRANSACTIONAL,
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
        "title": "Your order shipped",
        "body": "It arrives Tuesday",
    }
    return PushMessage(**{**defaults, **fields})


@dataclass(frozen=True)
class ApnsApp:
    """An app and its ``[apps.apns]`` section: what an :class:`ApnsProvider` is built from."""

    profile: AppProfile
    config: ApnsConfig

    def provider(self, **options: Any) -> ApnsProvider:
        return ApnsProvider(self.profile, self.config, **options)

    def with_config(self, **changes: Any) -> ApnsApp:
        return replace(self, config=self.config.model_copy(update=changes))


def app_for(
    simulator: ApnsSimulator, *, certificate_auth: bool = False, time_sensitive: bool = False
) -> ApnsApp:
    return ApnsApp(
        AppProfile(id="shop", time_sensitive=time_sensitive),
        ApnsConfig.model_validate(simulator.apns_config(TOPIC, certificate_auth=certificate_auth)),
    )


@pytest.fixture(name="apns_sim")
async def apns_sim_fixture() -> AsyncIterator[ApnsSimulator]:
    async with ApnsSimulator() as simulator:
        yield simulator


@pytest.fixture(name="apns_provider")
async def apns_provider_fixture(apns_sim: ApnsSimulator) -> AsyncIterator[ApnsProvider]:
    # A generous deadline: these tests are about what is sent and answered, not about time.
    provider = app_for(apns_sim).provider(send_timeout_seconds=60)
    try:
        yield provider
    finally:
        await provider.close()


def raw_aioapns_client(simulator: ApnsSimulator) -> APNs:
    """Unmodified aioapns pointed at the simulator (its pool connects to the protocol class's
    APNS_SERVER:APNS_PORT, so a subclass redirects it). Build it inside the running loop."""
    context = ssl.create_default_context(cafile=str(simulator.ca_file))
    client = APNs(
        key=simulator.provider_key.private_key_pem,
        key_id=simulator.provider_key.key_id,
        team_id=simulator.provider_key.team_id,
        topic=TOPIC,
        ssl_context=context,
        max_connection_attempts=1,
    )
    client.pool.protocol_class = type(
        "SimulatorProtocol",
        (APNsProductionClientProtocol,),
        {"APNS_SERVER": "127.0.0.1", "APNS_PORT": int(simulator.endpoint.rsplit(":", 1)[1])},
    )
    return client


async def close_raw_aioapns_client(client: APNs) -> None:
    client.pool.close()
    for _ in range(200):  # bounded: connections report loss within a few loop turns
        if not client.pool.connections:
            return
        await asyncio.sleep(0.01)
