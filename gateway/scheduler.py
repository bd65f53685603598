"""The APScheduler jobs that run inside ``pushgate serve`` (worker role).

- ``release``: every ``delivery.poll_interval_seconds``, release due deferred notifications in
  batches (see :mod:`gateway.services.release` for why deferred notifications are rows, not
  jobs) and wake the delivery worker.
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

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from gateway.delivery.worker import DeliveryWorker
from gateway.services.context import ServiceContext
from gateway.services.maintenance import MaintenanceService
from gateway.services.release import HOURS_AHEAD, release_due_notifications

log = logging.getLogger(__name__)


class GatewayJobs:
    """The scheduled work of one worker process."""

    def __init__(
        self,
        context: ServiceContext,
        worker: DeliveryWorker,
        maintenance: MaintenanceService,
        *,
        skip_locked: bool,
    ) -> None:
        self.context = context
        self.worker = worker
        self.maintenance = maintenance
        self.skip_locked = skip_locked
        self._running: set[asyncio.Task[Any]] = set()
        self._scheduler: AsyncIOScheduler | None = None

    @property
    def is_running(self) -> bool:
        """Whether the scheduler these jobs were given runs them (readiness asks): not yet
        scheduled, paused for the shutdown or stopped is not running."""
        return self._scheduler is not None and self._scheduler.state == STATE_RUNNING

    async def release(self) -> int:
        """Release every due deferred notification, a batch per transaction."""
        total = 0
        batch = self.context.settings.delivery.release_batch_size
        while True:
            result = await release_due_notifications(
                self.context.sessions,
                now=self.context.clock(),
                policy=self.context.policy,
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
        reclaimed = await self.worker.queue.reclaim_expired_leases(self.context.clock())
        for owner, count in reclaimed.items():
            log.warning("took over %d deliveries whose lease by %s ran out", count, owner)
        if reclaimed:
            self.worker.wake()
        return sum(reclaimed.values())

    async def refresh_metrics(self) -> None:
        metrics = self.context.metrics
        metrics.queue_depth.set(await self.worker.queue.depth())
        counts = (await self.maintenance.deferred_by_hour(self.context.clock())).totals
        labels = ["overdue"] + [str(hour) for hour in range(1, HOURS_AHEAD + 1)] + ["later"]
        for label, count in zip(labels, counts, strict=True):
            metrics.deferred.labels(label).set(count)

    async def retention(self) -> None:
        result = await self.maintenance.apply_retention(
            self.context.clock(), actor="scheduler:retention"
        )
        log.info(
            "retention: removed %d idempotency records, %d notifications, %d invalid tokens; "
            "marked %d devices stale",
            result.idempotency_records,
            result.notifications,
            result.invalid_tokens,
            result.stale_devices,
        )

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        self._scheduler = scheduler
        delivery = self.context.settings.delivery
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
        scheduler.add_job(
            self._tracked(self.release),
            "interval",
            seconds=delivery.poll_interval_seconds,
            id="release",
            **common,
        )
        scheduler.add_job(
            self._tracked(self.reclaim),
            "interval",
            seconds=delivery.lease_seconds,
            id="reclaim",
            **common,
        )
        scheduler.add_job(
            self._tracked(self.refresh_metrics), "interval", seconds=15, id="metrics", **common
        )
        scheduler.add_job(
            self._tracked(self.retention),
            "cron",
            hour=3,
            minute=17,
            timezone="UTC",
            id="retention",
            **common,
        )

    async def stop(self, scheduler: AsyncIOScheduler, *, grace_seconds: float = 10.0) -> None:
        """Stop starting jobs, let the running ones finish (at most ``grace_seconds``), then
        shut the scheduler down. APScheduler's own shutdown cancels running jobs, which then
        fail half-way through a database call with a traceback in the log."""
        scheduler.pause()
        if self._running:
            await asyncio.wait(self._running, timeout=grace_seconds)
        scheduler.shutdown(wait=False)

    def _tracked(self, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        """``job`` as a scheduled job: :meth:`stop` waits for it, and one still running when
        the grace period ends is cancelled quietly (its transaction rolls back; the work is
        done again by the next run, here or in another process)."""

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                log.info("the %s job was stopped by the shutdown; nothing is lost", name)
            finally:
                self._running.discard(task)

        name = getattr(job, "__name__", "scheduled")
        run.__name__ = run.__qualname__ = name
        return run
