"""Device registration, listing and removal, and the operator's token hygiene commands.

The registry rules themselves (refresh, reassignment, replacement, staleness) live in
:mod:`tokens`; this service runs them in transactions, within what the caller may touch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.db import transaction
from gateway.errors import NotFound
from gateway.models import Delivery, DeliveryStatus
from gateway.providers.registry import provider_for
from gateway.schemas import DeviceList, DeviceOut, DeviceRegistration
from gateway.services.access import Caller, resolve_app
from gateway.services.context import ServiceContext
from gateway.services.permission import count_permission_event, record_registration_change
from tokens import (
    CleanupResult,
    TokenCount,
    count_purge_candidates,
    count_stale_candidates,
    mark_stale_devices,
    purge_invalid_devices,
    register_device,
    stale_cutoffs,
    token_stats,
    unregister_device,
)
from tokens.cleanup import ProgressCallback
from tokens.models import Device, token_suffix

log = logging.getLogger(__name__)


async def move_pending_deliveries(session: AsyncSession, old_device: str, new_device: str) -> None:
    """A refreshed token inherits the retired token's pending deliveries."""
    already = select(Delivery.notification_id).where(Delivery.device_id == new_device)
    await session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.device_id) == old_device,
            col(Delivery.status) == DeliveryStatus.PENDING,
            col(Delivery.notification_id).not_in(already),
        )
        .values(device_id=new_device, lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


class DeviceService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def register(
        self, caller: Caller, registration: DeviceRegistration
    ) -> tuple[DeviceOut, bool]:
        """Register or refresh a token; returns the device and whether it is new."""
        settings = self._context.settings
        app_id = resolve_app(settings, registration.app, caller)
        app = settings.app(app_id)
        assert app is not None
        provider = provider_for(registration.platform)
        now = self._context.clock()
        async with transaction(self._context.sessions) as session:
            result = await register_device(
                session,
                now=now,
                user_id=registration.user_id,
                app=app_id,
                platform=registration.platform,
                token=registration.token,
                # a refresh that does not say keeps the device's environment; a new device
                # gets its app's (a sandbox build stays on the sandbox)
                environment=registration.environment,
                default_environment=provider.default_environment(
                    app.provider_config(provider.name)
                ),
                timezone=registration.timezone,
                locale=registration.locale,
                permission=registration.permission,
                replaces=registration.replaces,
                actor=f"api:{caller.name}",
            )
            if result.retired is not None:
                await move_pending_deliveries(session, result.retired.id, result.device.id)
            # the user's permission history also holds what the device reports, so a change
            # made in the system Settings is in it too
            permission_event = (
                await record_registration_change(
                    session,
                    result.device,
                    result.previous_permission,
                    now=now,
                    reported_by=caller.name,
                )
                if result.permission_changed
                else None
            )
            device = DeviceOut.model_validate(result.device)
        if permission_event is not None:
            count_permission_event(self._context.metrics, permission_event)
        log.info(
            "device %s %s user=%s app=%s token=…%s",
            "registered" if result.created else "refreshed",
            device.id,
            device.user_id,
            app_id,
            token_suffix(registration.token),
        )
        return device, result.created

    async def of_user(self, caller: Caller, user_id: str) -> DeviceList:
        """The user's devices in the apps the caller may see, oldest first."""
        query = select(Device).where(Device.user_id == user_id).order_by(col(Device.created_at))
        if caller.apps is not None:
            query = query.where(col(Device.app).in_(caller.apps))
        async with self._context.sessions() as session:
            devices = (await session.execute(query)).scalars().all()
            return DeviceList(devices=[DeviceOut.model_validate(d) for d in devices])

    async def unregister(self, caller: Caller, device_id: str) -> None:
        """Delete a device (its audit trail stays); 404 when absent or not the caller's."""
        async with transaction(self._context.sessions) as session:
            device = await session.get(Device, device_id)
            if device is None or not caller.may_use_app(device.app):
                raise NotFound(f"no device with id {device_id!r}")
            await unregister_device(
                session, device_id, now=self._context.clock(), actor=f"api:{caller.name}"
            )

    # -- operator commands ---------------------------------------------------------------------

    async def stats(self) -> list[TokenCount]:
        """Devices per app, platform and status."""
        async with self._context.sessions() as session:
            return await token_stats(session)

    async def count_stale(
        self, *, now: datetime, stale_after_days: Mapping[str, int], app: str | None = None
    ) -> int:
        """How many active devices are not seen for ``stale_after_days`` (per platform)."""
        async with self._context.sessions() as session:
            counts = await count_stale_candidates(
                session, cutoffs=stale_cutoffs(now, stale_after_days), app=app
            )
        return counts.total()

    async def count_purgeable(self, *, invalidated_before: datetime) -> int:
        """How many tokens have been invalid since before ``invalidated_before``."""
        async with self._context.sessions() as session:
            counts = await count_purge_candidates(session, invalidated_before=invalidated_before)
        return counts.total()

    async def mark_stale(
        self,
        *,
        now: datetime,
        stale_after_days: Mapping[str, int],
        actor: str,
        app: str | None = None,
        dry_run: bool = False,
        batch_size: int | None = None,
        on_batch: ProgressCallback | None = None,
    ) -> CleanupResult:
        """Mark devices not seen for ``stale_after_days`` (per platform) stale, in batches."""
        return await mark_stale_devices(
            self._context.sessions,
            now=now,
            cutoffs=stale_cutoffs(now, stale_after_days),
            actor=actor,
            app=app,
            dry_run=dry_run,
            **({"batch_size": batch_size} if batch_size else {}),
            on_batch=on_batch,
        )

    async def purge_invalid(
        self,
        *,
        now: datetime,
        invalidated_before: datetime,
        actor: str,
        dry_run: bool = False,
        batch_size: int | None = None,
        on_batch: ProgressCallback | None = None,
    ) -> CleanupResult:
        """Delete tokens invalid since before ``invalidated_before`` (their audit trail stays)."""
        return await purge_invalid_devices(
            self._context.sessions,
            now=now,
            invalidated_before=invalidated_before,
            actor=actor,
            dry_run=dry_run,
            **({"batch_size": batch_size} if batch_size else {}),
            on_batch=on_batch,
        )
