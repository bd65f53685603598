"""The gateway's service layer: what the HTTP API, the CLI and the scheduler call.

Services take plain values (a :class:`~gateway.services.access.Caller`, request models from
:mod:`gateway.schemas`, ids) and return plain values or raise :mod:`gateway.errors`; none of
them knows about HTTP. :class:`Services` bundles one of each, built by
:func:`gateway.runtime.build_runtime`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.db import database_ready, storage_unavailable
from gateway.services.access import Caller
from gateway.services.console import ConsoleService
from gateway.services.context import ServiceContext
from gateway.services.devices import DeviceService
from gateway.services.maintenance import MaintenanceService
from gateway.services.notifications import NotificationService
from gateway.services.permission import PermissionService
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
    permission: PermissionService
    console: ConsoleService

    async def unready_reason(self) -> str | None:
        """Why this process cannot take work now (what ``/readyz`` reports), or None: the
        database refused recent work, or cannot be written now."""
        failing = self.context.storage_health.failing(at=time.monotonic())
        if failing is not None:
            return failing
        return await database_ready(self.context.engine)

    def note_storage_failure(self, error: BaseException) -> str | None:
        """If ``error`` says the database is away or cannot write, remember it (readiness)
        and return why; None otherwise."""
        reason = storage_unavailable(error)
        if reason is not None:
            self.context.storage_health.note_failure(reason, at=time.monotonic())
        return reason
