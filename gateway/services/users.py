"""Forgetting a user."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import col, select

from gateway.db import lock_notifications, transaction
from gateway.models import Delivery, Notification, Preference, PreferenceChange
from gateway.services.access import Caller
from gateway.services.context import ServiceContext
from gateway.services.idempotency import forget_answers_holding
from gateway.services.permission import forget_permission_history
from tokens import forget_user_devices

log = logging.getLogger(__name__)

_CHUNK = 1000  # ids per DELETE: keeps each statement's parameter list small


class UserService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def forget(self, caller: Caller, user_id: str) -> None:
        """Erase a user's data in the apps the caller may touch: their notifications (pending
        ones are never sent), devices and permission history. A caller limited to some apps
        leaves the other apps' data alone, and the preferences too, which belong to the user
        across apps; a caller without an app limit also erases the preferences and their
        history."""
        now = self._context.clock()
        apps = caller.apps
        async with transaction(self._context.sessions) as session:
            query = select(Notification.id).where(Notification.user_id == user_id)
            if apps is not None:
                query = query.where(col(Notification.app).in_(apps))
            notification_ids = list((await session.execute(query)).scalars())
            # notifications, then their deliveries, then devices: the order the delivery
            # worker locks them in, so an erasure and a worker cannot deadlock
            await lock_notifications(session, notification_ids)
            for start in range(0, len(notification_ids), _CHUNK):
                chunk = notification_ids[start : start + _CHUNK]
                # an answer on record must not replay an erased notification to a retry
                await forget_answers_holding(session, chunk)
                await session.execute(
                    sa.delete(Delivery).where(col(Delivery.notification_id).in_(chunk))
                )
                await session.execute(
                    sa.delete(Notification).where(col(Notification.id).in_(chunk))
                )
            devices = await forget_user_devices(
                session, user_id, now=now, actor=f"api:{caller.name}", apps=apps
            )
            if apps is None:
                await session.execute(
                    sa.delete(Preference).where(col(Preference.user_id) == user_id)
                )
                await session.execute(
                    sa.delete(PreferenceChange).where(col(PreferenceChange.user_id) == user_id)
                )
            permission_events = await forget_permission_history(session, user_id, apps=apps)
        log.info(
            "forgot user %s%s: %d devices, %d notifications, %d permission events, by %s",
            user_id,
            f" in apps {', '.join(sorted(apps))}" if apps is not None else "",
            devices,
            len(notification_ids),
            permission_events,
            caller.name,
        )
