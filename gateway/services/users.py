"""Forgetting a user."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col, select

from gateway.db import transaction
from gateway.models import Delivery, Notification, Preference
from gateway.services.access import Caller
from gateway.services.context import ServiceContext
from tokens import forget_user_devices

log = logging.getLogger(__name__)


class UserService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def forget(self, caller: Caller, user_id: str) -> None:
        """Erase a user: devices, preferences and notifications (pending ones are never sent)."""
        now = self._context.clock()
        async with transaction(self._context.sessions) as session:
            devices = await forget_user_devices(
                session, user_id, now=now, actor=f"api:{caller.name}"
            )
            await session.execute(sa.delete(Preference).where(col(Preference.user_id) == user_id))
            notification_ids = select(Notification.id).where(Notification.user_id == user_id)
            await session.execute(
                sa.delete(Delivery).where(col(Delivery.notification_id).in_(notification_ids))
            )
            deleted = await session.execute(
                sa.delete(Notification).where(col(Notification.user_id) == user_id)
            )
        log.info(
            "forgot user %s: %d devices, %d notifications, by %s",
            user_id,
            devices,
            deleted.rowcount,  # type: ignore[attr-defined]
            caller.name,
        )
