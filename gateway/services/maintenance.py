"""Keeping the database to its retention limits, and the deferred queue at a glance."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import col, select

from gateway.db import transaction
from gateway.models import PENDING_NOTIFICATION_STATUSES, Delivery, Notification
from gateway.services.context import ServiceContext
from gateway.services.idempotency import purge_expired
from gateway.services.release import DeferredHistogram, deferred_release_histogram
from tokens import mark_stale_devices, purge_invalid_devices, stale_cutoffs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetentionResult:
    idempotency_records: int
    notifications: int
    invalid_tokens: int
    stale_devices: int


class MaintenanceService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def apply_retention(self, now: datetime, *, actor: str) -> RetentionResult:
        """Delete expired idempotency records, finished notifications older than
        ``retention.notifications_days`` and tokens invalid for longer than
        ``retention.invalid_tokens_days``; mark devices not seen for
        ``tokens.stale_after_days`` stale."""
        settings = self._context.settings
        retention = settings.retention
        sessions = self._context.sessions
        async with transaction(sessions) as session:
            idempotency = await purge_expired(
                session, now=now, retention=timedelta(hours=retention.idempotency_hours)
            )
            cutoff = now - timedelta(days=retention.notifications_days)
            finished = select(Notification.id).where(
                col(Notification.status).not_in(PENDING_NOTIFICATION_STATUSES),
                col(Notification.updated_at) < cutoff,
            )
            await session.execute(
                sa.delete(Delivery).where(col(Delivery.notification_id).in_(finished))
            )
            notifications = await session.execute(
                sa.delete(Notification).where(
                    col(Notification.status).not_in(PENDING_NOTIFICATION_STATUSES),
                    col(Notification.updated_at) < cutoff,
                )
            )
        purged = await purge_invalid_devices(
            sessions,
            now=now,
            invalidated_before=now - timedelta(days=retention.invalid_tokens_days),
            actor=actor,
        )
        stale = await mark_stale_devices(
            sessions,
            now=now,
            cutoffs=stale_cutoffs(
                now,
                {
                    str(platform): days
                    for platform, days in settings.tokens.stale_after_days.items()
                },
            ),
            actor=actor,
        )
        return RetentionResult(
            idempotency_records=idempotency,
            notifications=int(notifications.rowcount or 0),  # type: ignore[attr-defined]
            invalid_tokens=purged.total,
            stale_devices=stale.total,
        )

    async def deferred_by_hour(self, now: datetime, *, app: str | None = None) -> DeferredHistogram:
        """Deferred notifications by reason and release hour: ``[overdue, hour 1, ..., hour
        24, later]`` for each."""
        async with self._context.sessions() as session:
            return await deferred_release_histogram(session, now=now, app=app)
