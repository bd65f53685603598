"""The gateway's service layer: what the HTTP API, the CLI and the scheduler call.

Services take plain values (a :class:`~gateway.services.access.Caller`, request models from
:mod:`gateway.schemas`, ids) and return plain values or raise :mod:`gateway.errors`; none of
them knows about HTTP. :class:`Services` bundles one of each, built by
:func:`gateway.runtime.build_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.db import database_reachable
from gateway.services.access import Caller
from gateway.services.context import ServiceContext
from gateway.services.devices import DeviceService
from gateway.services.maintenance import MaintenanceService
from gateway.services.notifications import NotificationService
from gateway.services.preferences import PreferenceService
from gateway.services.users import UserService

__all__ = ["Caller", "ServiceContext", "Services"]


@dataclass(frozen=True)
class Services:
    context: ServiceContext
    notifications: NotificationService
    devices: DeviceService
    preferences: PreferenceService
    users: UserService
    maintenance: MaintenanceService

    async def ready(self) -> bool:
        """Whether the database answers (what ``/readyz`` reports)."""
        return await database_reachable(self.context.engine)
