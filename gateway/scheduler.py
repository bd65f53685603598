"""The APScheduler jobs that run inside ``pushgate serve`` (worker role).

- ``release``: every ``delivery.poll_interval_seconds``, release due deferred notifications in
  batches (see :mod:`gateway.release` for why deferred notifications are rows, not jobs) and
  wake the delivery worker.
- ``reclaim``: every ``delivery.lease_seconds``, clear leases that ran out (a worker died
  holding them) so the work is taken over, and say so in the log.
- ``metrics``: every 15 s, queue depth and deferred notifications by release hour.
- ``retention``: nightly at 03:17 UTC, delete expired idempotency records, finished
  notifications older than ``retention.notifications_days`` and invalid tokens older than
  ``retention.invalid_tokens_days``; mark devices not seen for ``tokens.stale_after_days``
  stale.

Every job takes ``now`` from the injected clock, so tests run them directly at any instant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from gateway.config import Settings
from gateway.db import transaction
from gateway.delivery import DeliveryWorker
from gateway.idempotency import purge_expired
from gateway.metrics import Metrics
from gateway.models import (
    PENDING_NOTIFICATION_STATUSES,
    Delivery,
    DeliveryStatus,
    Notification,
)
from gateway.release import HOURS_AHEAD, deferred_release_histogram, release_due_notifications
from policies import PolicySettings
from tokens.cleanup import mark_stale_devices, purge_invalid_devices, stale_cutoffs

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class GatewayJobs:
    """The scheduled work of one worker process."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        policy: PolicySettings,
        worker: DeliveryWorker,
        *,
        clock: Clock,
        metrics: Metrics,
        skip_locked: bool,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.policy = policy
        self.worker = worker
        self.clock = clock
        self.metrics = metrics
        self.skip_locked = skip_locked

    async def release(self) -> int:
        """Release every due deferred notification, a batch per transaction."""
        total = 0
        batch = self.settings.delivery.release_batch_size
        while True:
            result = await release_due_notifications(
                self.sessions,
                now=self.clock(),
                policy=self.policy,
                batch_size=batch,
                skip_locked=self.skip_locked,
            )
            total += result.released
            if result.queued:
                self.worker.wake()
            if result.released < batch:
                return total

    async def reclaim(self) -> int:
        """Clear run-out leases so any worker may take the work over."""
        now = self.clock()
        async with transaction(self.sessions) as session:
            owners = await session.execute(
                select(Delivery.lease_owner, sa.func.count())
                .where(
                    col(Delivery.status) == DeliveryStatus.PENDING,
                    col(Delivery.lease_until) < now,
                )
                .group_by(col(Delivery.lease_owner))
            )
            reclaimed = owners.all()
            if not reclaimed:
                return 0
            await session.execute(
                sa.update(Delivery)
                .where(
                    col(Delivery.status) == DeliveryStatus.PENDING,
                    col(Delivery.lease_until) < now,
                )
                .values(lease_owner=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )
        for owner, count in reclaimed:
            log.warning("took over %d deliveries whose lease by %s ran out", count, owner)
        self.worker.wake()
        return sum(count for _owner, count in reclaimed)

    async def refresh_metrics(self) -> None:
        now = self.clock()
        async with self.sessions() as session:
            depth = await session.execute(
                select(sa.func.count())
                .select_from(Delivery)
                .where(col(Delivery.status) == DeliveryStatus.PENDING)
            )
            self.metrics.queue_depth.set(depth.scalar_one())
            counts = await deferred_release_histogram(session, now=now)
        labels = ["overdue"] + [str(hour) for hour in range(1, HOURS_AHEAD + 1)] + ["later"]
        for label, count in zip(labels, counts, strict=True):
            self.metrics.deferred.labels(label).set(count)

    async def retention(self) -> None:
        now = self.clock()
        retention = self.settings.retention
        async with transaction(self.sessions) as session:
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
            self.sessions,
            now=now,
            invalidated_before=now - timedelta(days=retention.invalid_tokens_days),
            actor="scheduler:retention",
        )
        stale = await mark_stale_devices(
            self.sessions,
            now=now,
            cutoffs=stale_cutoffs(
                now, {str(k): v for k, v in self.settings.tokens.stale_after_days.items()}
            ),
            actor="scheduler:retention",
        )
        log.info(
            "retention: removed %d idempotency records, %d notifications, %d invalid tokens; "
            "marked %d devices stale",
            idempotency,
            notifications.rowcount,  # type: ignore[attr-defined]
            purged.total,
            stale.total,
        )

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        delivery = self.settings.delivery
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
        scheduler.add_job(
            self.release, "interval", seconds=delivery.poll_interval_seconds, id="release", **common
        )
        scheduler.add_job(
            self.reclaim, "interval", seconds=delivery.lease_seconds, id="reclaim", **common
        )
        scheduler.add_job(self.refresh_metrics, "interval", seconds=15, id="metrics", **common)
        scheduler.add_job(
            self.retention, "cron", hour=3, minute=17, timezone="UTC", id="retention", **common
        )
