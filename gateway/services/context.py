"""What every service is built with: the configuration, the database, the policy, the clock,
the metrics and the hand-off to the delivery worker."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.config import Settings
from gateway.db import StorageHealth
from gateway.metrics import Metrics
from policies import PolicySettings

Clock = Callable[[], datetime]
Dispatch = Callable[[Sequence[str]], None]
"""Hands the ids of notifications just queued to a delivery worker in this process."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def no_dispatch(_ids: Sequence[str]) -> None:
    """Without a worker in this process the deliveries wait for one that polls the database."""


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    policy: PolicySettings
    clock: Clock
    metrics: Metrics
    dispatch: Dispatch = no_dispatch
    storage_health: StorageHealth = field(default_factory=StorageHealth)
