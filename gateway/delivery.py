"""The delivery worker: claim due deliveries, send them, record what the provider said.

The data path of one round: claim (lease) → build messages → provider ``send`` → report →
delivery status and token outcome → the notification's final status. The ``deliveries`` rows
are the queue and the journal: a worker that dies holding a lease loses nothing, its work is
claimed again once the lease has run out (only what was in flight may be sent twice).

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers share the queue; on
SQLite one process owns delivery (:class:`gateway.server` takes a lock file for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped
from sqlmodel import col, or_, select

from gateway.config import DeliveryConfig
from gateway.db import transaction
from gateway.metrics import Metrics
from gateway.models import Delivery, DeliveryStatus, Notification, NotificationStatus
from gateway.providers.base import Platform, Provider, PushMessage
from policies import DropReason
from policies.tiers import Tier
from tokens.feedback import InvalidationGuard, TokenOutcome, apply_report
from tokens.models import Device, DeviceStatus
from tokens.registry import is_deliverable
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ProviderLookup = Callable[[str, Platform], Provider]

PROVIDER_NAMES: dict[str, str] = {"ios": "apns", "android": "fcm"}


def worker_identity() -> str:
    """Names the lease holder in the database: host, process and a random part."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_delay(attempt: int, config: DeliveryConfig, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    ceiling = min(config.backoff_max_seconds, config.backoff_base_seconds * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` transient failures in a row of one provider and app; while
    open, that provider's deliveries wait (they are not attempted and do not use up attempts).
    After ``reset_seconds`` one round is let through: a success closes it, a failure reopens."""

    threshold: int
    reset_seconds: float
    failures: int = 0
    open_until: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and now < self.open_until

    def record(self, outcome: Outcome, now: datetime) -> None:
        if outcome is Outcome.RETRY:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open_until = now + timedelta(seconds=self.reset_seconds)
        else:
            self.failures = 0
            self.open_until = None


# A delivery error that means "ran out of time", alone or after the last provider reason
EXPIRED = "expired"
EXPIRED_SUFFIX = f" ({EXPIRED})"


@dataclass(frozen=True, slots=True)
class Recorded:
    reports: list[DeliveryReport]  # the reports written (late ones after a lost lease are not)
    finished: int  # notifications that reached their final status


@dataclass(frozen=True, slots=True)
class QueuedNotification:
    """The columns of a notification that sending it needs, read as plain values: a tracked
    ORM instance per delivery was the largest CPU cost of a claim."""

    id: str
    app: str
    tier: str
    expires_at: datetime
    title: str | None
    body: str | None
    data: dict[str, Any] | None
    badge: int | None
    sound: str | None
    thread_id: str | None
    collapse_key: str | None

    @classmethod
    def columns(cls) -> list[Mapped[Any]]:
        """The selected columns, in field order."""
        return [col(getattr(Notification, name)) for name in cls.__dataclass_fields__]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    delivery_id: str
    attempts: int
    notification: QueuedNotification
    device: Device

    @property
    def app(self) -> str:
        return self.notification.app


# Delivery rounds one worker runs at once (see DeliveryWorker.drain): two lets one round's
# claim and record overlap the other's sends.
ROUNDS_IN_FLIGHT = 2


@dataclass
class RoundResult:
    """What one round did, for logs, metrics and tests."""

    claimed: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: defaultdict(int))
    waiting_on_breaker: int = 0
    finished_notifications: int = 0

    def add(self, other: RoundResult) -> None:
        self.claimed += other.claimed
        self.waiting_on_breaker += other.waiting_on_breaker
        self.finished_notifications += other.finished_notifications
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] += count


def unsendable_report(item: ClaimedDelivery, now: datetime) -> DeliveryReport | None:
    """Why a claimed delivery must not go out at all, as a ``FAILED`` report; ``None`` to send.

    A delivery can wait a long time (retries, an open breaker, an outage) while the world
    moves: it never goes out late, and never to a device that has since been invalidated by
    another send's feedback, gone stale, or denied permission.
    """
    if item.notification.expires_at <= now:
        return DeliveryReport(Outcome.FAILED, reason=EXPIRED)
    device = item.device
    if is_deliverable(device, item.app):
        return None
    if device.status == DeviceStatus.INVALID:
        reason = f"device_invalid: {device.invalid_reason or 'unknown'}"
    elif device.status == DeviceStatus.STALE:
        reason = "device_stale"
    else:
        reason = "permission_denied"
    return DeliveryReport(Outcome.FAILED, reason=reason[:256])


def push_message(notification: QueuedNotification, device: Device) -> PushMessage:
    return PushMessage(
        token=device.token,
        platform="ios" if device.platform == "ios" else "android",
        tier=Tier(notification.tier),
        expires_at=notification.expires_at,
        environment="sandbox" if device.environment == "sandbox" else "production",
        title=notification.title,
        body=notification.body,
        data=notification.data or {},
        badge=notification.badge,
        sound=notification.sound,
        thread_id=notification.thread_id,
        collapse_key=notification.collapse_key,
        notification_id=notification.id,
    )


class DeliveryWorker:
    """Runs delivery rounds until stopped; :meth:`wake` starts a round at once (the immediate
    path for notifications queued by the API in this process)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: ProviderLookup,
        config: DeliveryConfig,
        *,
        clock: Clock,
        metrics: Metrics,
        guard: InvalidationGuard | None = None,
        owner: str | None = None,
        use_skip_locked: bool = False,
        batch_size: int = 500,
        rng: random.Random | None = None,
    ) -> None:
        self.sessions = sessions
        self.providers = providers
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.guard = guard
        self.owner = owner or worker_identity()
        self.use_skip_locked = use_skip_locked
        self.batch_size = batch_size
        self.rng = rng or random.Random()
        self.breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        # deliveries of this worker's rounds in flight: never claimed again while they are out,
        # even when a slow round outlives its lease (the owner name would match)
        self._out: set[str] = set()

    # -- running -------------------------------------------------------------------------------

    def wake(self, _ids: Sequence[str] = ()) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; a failing round is logged and retried, never fatal."""
        log.info("delivery worker %s started", self.owner)
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self.drain()
            except Exception:
                log.exception("delivery round failed; retrying after the poll interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_seconds)
        log.info("delivery worker %s stopped", self.owner)

    async def drain(self) -> RoundResult:
        """Rounds back to back until a claim comes back short of a full batch (or :meth:`stop`).

        The next batch is claimed, and starts sending, while the previous one is still being
        sent and recorded: at most :data:`ROUNDS_IN_FLIGHT` rounds at once, so the database's
        turn in one round overlaps the provider's in the other. ``concurrency_per_app`` holds
        across them (one semaphore per app and platform)."""
        total = RoundResult()
        rounds: list[asyncio.Task[RoundResult]] = []
        try:
            while not self._stopping.is_set():
                now = self.clock()
                claimed = await self.claim(now)
                if claimed:
                    out = {item.delivery_id for item in claimed}
                    self._out |= out  # before the next claim's query is built
                    rounds.append(asyncio.create_task(self._deliver_out(claimed, out, now)))
                if len(rounds) >= ROUNDS_IN_FLIGHT or (rounds and len(claimed) < self.batch_size):
                    total.add(await rounds.pop(0))
                if len(claimed) < self.batch_size:
                    break
        finally:
            # a round that failed must not leave the other one running unawaited
            for result in await asyncio.gather(*rounds, return_exceptions=True):
                if isinstance(result, RoundResult):
                    total.add(result)
                elif isinstance(result, BaseException):
                    log.error("delivery round failed", exc_info=result)
        return total

    async def _deliver_out(
        self, claimed: list[ClaimedDelivery], out: set[str], now: datetime
    ) -> RoundResult:
        try:
            return await self.deliver_claimed(claimed, now)
        finally:
            self._out -= out

    async def run_round(self) -> RoundResult:
        """Claim one batch of due deliveries, send it, record the results."""
        now = self.clock()
        claimed = await self.claim(now)
        return await self.deliver_claimed(claimed, now)

    async def deliver_claimed(self, claimed: list[ClaimedDelivery], now: datetime) -> RoundResult:
        """Send a claimed batch and record the results."""
        result = RoundResult(claimed=len(claimed))
        settled = [(item, unsendable_report(item, now)) for item in claimed]
        unsendable = [(item, report) for item, report in settled if report is not None]
        if unsendable:
            items, reports = map(list, zip(*unsendable, strict=True))
            recorded = await self.record_reports(items, reports, now, sent=False)
            result.finished_notifications += recorded.finished
            claimed = [item for item, report in settled if report is None]
        groups: dict[tuple[str, str], list[ClaimedDelivery]] = defaultdict(list)
        for item in claimed:
            groups[(item.app, item.device.platform)].append(item)
        await asyncio.gather(
            *(
                self._deliver_group(app, platform, items, result)
                for (app, platform), items in groups.items()
            )
        )
        return result

    # -- claiming ------------------------------------------------------------------------------

    async def claim(self, now: datetime) -> list[ClaimedDelivery]:
        """Lease up to ``batch_size`` due pending deliveries to this worker."""
        lease_until = now + timedelta(seconds=self.config.lease_seconds)
        async with transaction(self.sessions) as session:
            query = (
                select(Delivery.id)
                .where(
                    col(Delivery.status) == DeliveryStatus.PENDING,
                    col(Delivery.next_attempt_at) <= now,
                    or_(col(Delivery.lease_until).is_(None), col(Delivery.lease_until) < now),
                )
                .order_by(col(Delivery.next_attempt_at))
                .limit(self.batch_size)
            )
            if self._out:
                query = query.where(col(Delivery.id).not_in(self._out))
            if self.use_skip_locked:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if not ids:
                return []
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids))
                .values(lease_owner=self.owner, lease_until=lease_until)
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(
                sa.select(
                    col(Delivery.id), col(Delivery.attempts), Device, *QueuedNotification.columns()
                )
                .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                .join(Device, col(Device.id) == col(Delivery.device_id))
                .where(col(Delivery.id).in_(ids))
            )
            claimed = [
                ClaimedDelivery(delivery_id, attempts, QueuedNotification(*columns), device)
                for delivery_id, attempts, device, *columns in rows.all()
            ]
        # deliveries whose device row is gone (unregistered meanwhile) end here, with a reason
        found = {item.delivery_id for item in claimed}
        orphans = [delivery_id for delivery_id in ids if delivery_id not in found]
        if orphans:
            await self._fail_orphans(orphans, now)
        return claimed

    async def _fail_orphans(self, ids: list[str], now: datetime) -> None:
        async with transaction(self.sessions) as session:
            notification_ids = set(
                (
                    await session.execute(
                        select(Delivery.notification_id).where(col(Delivery.id).in_(ids))
                    )
                ).scalars()
            )
            # notifications before deliveries, the order every other writer locks them in
            await lock_notifications(session, notification_ids)
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.lease_owner) == self.owner)
                .values(
                    status=DeliveryStatus.FAILED,
                    error="device_unregistered",
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            await finish_notifications(session, notification_ids, now=now, locked=True)

    # -- sending -------------------------------------------------------------------------------

    def _breaker(self, app: str, platform: str) -> CircuitBreaker:
        key = (app, platform)
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(
                self.config.breaker_failure_threshold, self.config.breaker_reset_seconds
            )
        return self.breakers[key]

    def _limit(self, app: str, platform: str) -> asyncio.Semaphore:
        key = (app, platform)
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(self.config.concurrency_per_app)
        return self._limits[key]

    async def _deliver_group(
        self, app: str, platform: str, items: list[ClaimedDelivery], result: RoundResult
    ) -> None:
        provider_name = PROVIDER_NAMES.get(platform, platform)
        breaker = self._breaker(app, platform)
        now = self.clock()
        if breaker.is_open(now):
            assert breaker.open_until is not None
            await self._postpone(items, breaker.open_until, now)
            result.waiting_on_breaker += len(items)
            return
        provider = self.providers(app, "ios" if platform == "ios" else "android")
        limit = self._limit(app, platform)

        held_until: list[datetime] = []

        async def send_one(item: ClaimedDelivery) -> DeliveryReport | None:
            # a sliding window: the next send starts as soon as any one answers, not when the
            # slowest of a chunk does
            async with limit:
                # the other round in flight may have opened the breaker while this one waited
                if breaker.is_open(self.clock()):
                    assert breaker.open_until is not None
                    held_until.append(breaker.open_until)
                    return None
                (report,) = await self._send(provider, [item])
                return report

        answers = await asyncio.gather(*(send_one(item) for item in items))
        now = self.clock()
        held, sent, reports = [], [], []
        for item, report in zip(items, answers, strict=True):
            if report is None:
                held.append(item)
            else:
                sent.append(item)
                reports.append(report)
        if held:
            await self._postpone(held, max(held_until), now)
            result.waiting_on_breaker += len(held)
        if sent:
            recorded = await self.record_reports(sent, reports, now)
            # only results this worker recorded count: a late one after a lost lease is not news
            for report in recorded.reports:
                breaker.record(report.outcome, now)
                self.metrics.deliveries.labels(provider_name, app, report.outcome).inc()
                result.outcomes[report.outcome] += 1
            result.finished_notifications += recorded.finished
        # also when the whole group was held: the gauge says the breaker is open
        self.metrics.breaker_open.labels(provider_name, app).set(int(breaker.is_open(now)))

    async def _send(self, provider: Provider, items: list[ClaimedDelivery]) -> list[DeliveryReport]:
        messages = [push_message(item.notification, item.device) for item in items]
        try:
            reports = await provider.send(messages)
        except Exception as exc:  # a provider must not raise; if one does, nothing is lost
            log.exception("provider raised instead of reporting; retrying the batch")
            return [
                DeliveryReport(Outcome.RETRY, reason=f"provider_error: {type(exc).__name__}")
            ] * len(items)
        if len(reports) != len(items):
            log.error("provider returned %d reports for %d messages", len(reports), len(items))
            return [DeliveryReport(Outcome.RETRY, reason="provider_error: report count")] * len(
                items
            )
        return reports

    async def _postpone(self, items: list[ClaimedDelivery], until: datetime, now: datetime) -> None:
        async with transaction(self.sessions) as session:
            await session.execute(
                sa.update(Delivery)
                .where(
                    col(Delivery.id).in_([item.delivery_id for item in items]),
                    col(Delivery.lease_owner) == self.owner,
                )
                .values(next_attempt_at=until, lease_owner=None, lease_until=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    # -- recording -----------------------------------------------------------------------------

    async def record_reports(
        self,
        items: list[ClaimedDelivery],
        reports: list[DeliveryReport],
        now: datetime,
        *,
        sent: bool = True,
    ) -> Recorded:
        """Write each report to its delivery (only while this worker still holds the lease),
        apply token outcomes, and finish notifications whose deliveries are all done.
        ``sent=False`` marks reports made without asking a provider, which the
        mass-invalidation guard must not count as sends."""
        touched: set[str] = set()
        recorded: list[DeliveryReport] = []
        async with transaction(self.sessions) as session:
            # Notifications first, then deliveries: the order cancel_notification locks them in
            await lock_notifications(session, {item.notification.id for item in items})
            ours = await self._still_ours(session, [item.delivery_id for item in items])
            updates: dict[tuple[str, ...], list[dict[str, object]]] = defaultdict(list)
            for item, report in zip(items, reports, strict=True):
                if item.delivery_id not in ours:
                    # our lease ran out and another worker took over, or it was cancelled
                    log.warning(
                        "delivery %s is no longer ours (lease lost or cancelled); "
                        "dropping this result",
                        item.delivery_id,
                    )
                    continue
                values = self._delivery_update(item, report, now)
                row = {
                    "delivery_id": item.delivery_id,
                    **values,
                    "lease_owner": None,
                    "lease_until": None,
                    "updated_at": now,
                }
                updates[tuple(row)].append(row)
                recorded.append(report)
                if sent and self.guard is not None:
                    self.guard.record(item.app, report, now)
                if report.outcome is Outcome.TOKEN_DEAD:
                    provider = PROVIDER_NAMES.get(item.device.platform, item.device.platform)
                    outcome = await apply_report(
                        session,
                        item.device.id,
                        report,
                        now=now,
                        actor=f"{provider}:{report.status or ''} {report.reason or ''}".strip(),
                        guard=self.guard,
                    )
                    if outcome is TokenOutcome.INVALIDATED:
                        self.metrics.tokens_invalidated.labels(
                            item.app, item.device.platform, report.reason or ""
                        ).inc()
                if values["status"] != DeliveryStatus.PENDING:
                    touched.add(item.notification.id)
            # One core executemany by primary key per set of columns written (a sent delivery
            # sets provider_id, a waiting one next_attempt_at): the ORM's bulk update did the
            # same statements with a good deal of bookkeeping per row.
            for rows in updates.values():
                await session.execute(UPDATE_DELIVERY, rows)
            finished = await finish_notifications(session, touched, now=now, locked=True)
        return Recorded(recorded, finished)

    async def _still_ours(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """The deliveries among ``ids`` this worker still holds, locked until the commit."""
        query = select(Delivery.id).where(
            col(Delivery.id).in_(ids),
            col(Delivery.lease_owner) == self.owner,
            col(Delivery.status) == DeliveryStatus.PENDING,
        )
        if self.use_skip_locked:  # PostgreSQL; SQLite has one writer and no FOR UPDATE
            query = query.with_for_update()
        return set((await session.execute(query)).scalars())

    def _delivery_update(
        self, item: ClaimedDelivery, report: DeliveryReport, now: datetime
    ) -> dict[str, object]:
        attempts = item.attempts + 1
        match report.outcome:
            case Outcome.SENT:
                return {
                    "status": DeliveryStatus.SENT,
                    "attempts": attempts,
                    "provider_id": report.provider_id,
                    "error": None,
                }
            case Outcome.TOKEN_DEAD:
                return {
                    "status": DeliveryStatus.INVALID_TOKEN,
                    "attempts": attempts,
                    "provider_id": report.provider_id,
                    "error": report.reason,
                }
            case Outcome.FAILED:
                return {
                    "status": DeliveryStatus.FAILED,
                    "attempts": attempts,
                    "provider_id": report.provider_id,
                    "error": report.reason,
                }
        # RETRY: back off (at least Retry-After), unless attempts or time have run out
        delay = backoff_delay(attempts, self.config, self.rng)
        if report.retry_after is not None:
            delay = max(delay, report.retry_after)
        next_attempt = now + timedelta(seconds=delay)
        if attempts >= self.config.max_attempts or next_attempt >= item.notification.expires_at:
            why = "attempts exhausted" if attempts >= self.config.max_attempts else EXPIRED
            return {
                "status": DeliveryStatus.FAILED,
                "attempts": attempts,
                "error": f"{(report.reason or 'transient error')[:200]} ({why})",
            }
        self.metrics.retries.labels(PROVIDER_NAMES.get(item.device.platform, ""), item.app).inc()
        return {
            "status": DeliveryStatus.PENDING,
            "attempts": attempts,
            "error": report.reason,
            "next_attempt_at": next_attempt,
        }


deliveries_table = cast(sa.Table, Delivery.__table__)  # type: ignore[attr-defined]
UPDATE_DELIVERY = sa.update(deliveries_table).where(
    deliveries_table.c.id == sa.bindparam("delivery_id")
)


async def lock_notifications(session: AsyncSession, notification_ids: set[str]) -> None:
    """Row-lock the notifications (in id order, so two lockers cannot deadlock) until the
    transaction ends.

    Two transactions finishing deliveries of one notification (its iOS and Android groups in
    one round, or two workers) must not both count the other's delivery as still pending under
    READ COMMITTED, or neither finishes the notification and it stays ``queued`` for good. With
    the lock the second one waits, then counts with the first one's deliveries committed.
    SQLite serialises writers anyway and renders no ``FOR UPDATE``, so there is nothing to
    run.
    """
    if notification_ids and session.get_bind().dialect.name != "sqlite":
        await session.execute(
            select(Notification.id)
            .where(col(Notification.id).in_(notification_ids))
            .order_by(col(Notification.id))
            .with_for_update()
        )


async def finish_notifications(
    session: AsyncSession, notification_ids: set[str], *, now: datetime, locked: bool = False
) -> int:
    """Give each queued notification whose deliveries have all ended its final status: ``sent``
    when at least one device got it; ``expired`` (reason ``expired``) when every delivery ran
    out of time; else ``failed``, each delivery's ``error`` saying why. Returns how many were
    finished. ``locked`` says the caller already holds :func:`lock_notifications` on them."""
    if not notification_ids:
        return 0
    if not locked:
        await lock_notifications(session, notification_ids)
    counts = await session.execute(
        sa.select(
            col(Delivery.notification_id),
            sa.func.count(),
            sa.func.sum(sa.case((col(Delivery.status) == DeliveryStatus.PENDING, 1), else_=0)),
            sa.func.sum(sa.case((col(Delivery.status) == DeliveryStatus.SENT, 1), else_=0)),
            sa.func.sum(
                sa.case(
                    (
                        sa.or_(
                            col(Delivery.error) == EXPIRED,
                            col(Delivery.error).endswith(EXPIRED_SUFFIX),
                        ),
                        1,
                    ),
                    else_=0,
                )
            ),
        )
        .where(col(Delivery.notification_id).in_(notification_ids))
        .group_by(col(Delivery.notification_id))
    )
    final: dict[tuple[NotificationStatus, str | None], list[str]] = {}
    outcome: tuple[NotificationStatus, str | None]
    for notification_id, total, pending, sent, expired in counts.all():
        if pending:
            continue
        if sent:
            outcome = (NotificationStatus.SENT, None)
        elif expired == total:
            outcome = (NotificationStatus.EXPIRED, DropReason.EXPIRED.value)
        else:
            outcome = (NotificationStatus.FAILED, None)
        final.setdefault(outcome, []).append(notification_id)
    for (status, reason), ids in final.items():
        await session.execute(
            sa.update(Notification)
            .where(
                col(Notification.id).in_(ids),
                col(Notification.status) == NotificationStatus.QUEUED,
            )
            .values(status=status, reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return sum(len(ids) for ids in final.values())
