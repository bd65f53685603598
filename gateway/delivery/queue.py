"""The ``deliveries`` table as a durable queue: claim, lease, postpone, record, finish.

Every statement the delivery worker runs lives here. The rows are the queue and the journal: a
worker that dies holding a lease loses nothing, its work is claimed again once the lease has
run out (only what was in flight may be sent twice).

Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers share the queue; on
SQLite one process owns delivery (``pushgate serve`` takes a lock file for it). Writers lock
a notification before its deliveries, always in id order, so two of them never deadlock.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped
from sqlmodel import col, or_, select

from gateway.db import lock_notifications, transaction
from gateway.models import (
    Delivery,
    DeliveryEnd,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from policies import DropReason
from tokens.feedback import InvalidationGuard, TokenOutcome, apply_report
from tokens.models import Device, DeviceState
from tokens.reports import DeliveryReport

log = logging.getLogger(__name__)


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
    request_id: str | None

    @classmethod
    def columns(cls) -> list[Mapped[Any]]:
        """The selected columns, in field order."""
        return [col(getattr(Notification, name)) for name in cls.__dataclass_fields__]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased to this worker, with what sending it needs."""

    delivery_id: str
    attempts: int
    notification: QueuedNotification
    device: DeviceState

    @property
    def app(self) -> str:
        return self.notification.app


@dataclass(frozen=True, slots=True)
class Settled:
    """What a delivery becomes after one attempt (or a decision not to attempt it)."""

    status: DeliveryStatus
    attempts: int
    error: str | None = None
    provider_id: str | None = None
    end_reason: DeliveryEnd | None = None  # None while it stays pending
    next_attempt_at: datetime | None = None  # set when it waits for another attempt

    def columns(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "end_reason": self.end_reason,
        }
        if self.status != DeliveryStatus.PENDING or self.provider_id is not None:
            values["provider_id"] = self.provider_id
        if self.next_attempt_at is not None:
            values["next_attempt_at"] = self.next_attempt_at
        return values


@dataclass(frozen=True, slots=True)
class Result:
    """One claimed delivery, what the provider said (if asked), and what it becomes."""

    item: ClaimedDelivery
    report: DeliveryReport
    settled: Settled
    sent: bool = True
    """Whether a provider was asked (the mass-invalidation guard counts only real sends)."""
    provider: str = ""
    """The provider's name, for the audit trail of a token it declared dead."""
    latency: float | None = None
    """Seconds the provider took to answer (None when it was not asked)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What :meth:`DeliveryQueue.record` wrote."""

    results: list[Result]  # the ones written (late ones after a lost lease are not)
    invalidated: list[Result]  # the ones whose token was invalidated
    finished: list[str]  # the notifications that reached their final status


deliveries_table = cast(sa.Table, Delivery.__table__)  # type: ignore[attr-defined]
_UPDATE_DELIVERY = sa.update(deliveries_table).where(
    deliveries_table.c.id == sa.bindparam("delivery_id")
)


class DeliveryQueue:
    """The queue operations of one worker (``owner`` names its leases)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        owner: str,
        skip_locked: bool,
        lease_seconds: int,
        guard: InvalidationGuard | None = None,
    ) -> None:
        self.sessions = sessions
        self.owner = owner
        self.skip_locked = skip_locked
        self.lease = timedelta(seconds=lease_seconds)
        self.guard = guard

    async def claim(
        self, now: datetime, limit: int, *, exclude: Iterable[str] = ()
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due pending deliveries to this worker. ``exclude``: ids this
        worker still has out (never claimed twice, even after their lease ran out)."""
        excluded = list(exclude)
        async with transaction(self.sessions) as session:
            query = (
                select(Delivery.id)
                .where(
                    col(Delivery.status) == DeliveryStatus.PENDING,
                    col(Delivery.next_attempt_at) <= now,
                    or_(col(Delivery.lease_until).is_(None), col(Delivery.lease_until) < now),
                )
                .order_by(col(Delivery.next_attempt_at))
                .limit(limit)
            )
            if excluded:
                query = query.where(col(Delivery.id).not_in(excluded))
            if self.skip_locked:
                query = query.with_for_update(skip_locked=True)
            ids = list((await session.execute(query)).scalars())
            if not ids:
                return []
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids))
                .values(lease_owner=self.owner, lease_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            device_columns = DeviceState.columns()
            rows = await session.execute(
                sa.select(
                    col(Delivery.id),
                    col(Delivery.attempts),
                    *device_columns,
                    *QueuedNotification.columns(),
                )
                .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                .join(Device, col(Device.id) == col(Delivery.device_id))
                .where(col(Delivery.id).in_(ids))
            )
            split = 2 + len(device_columns)
            claimed = [
                ClaimedDelivery(
                    row[0],
                    row[1],
                    QueuedNotification(*row[split:]),
                    DeviceState(*row[2:split]),
                )
                for row in rows.all()
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
            await lock_notifications(session, notification_ids)
            await session.execute(
                sa.update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.lease_owner) == self.owner)
                .values(
                    status=DeliveryStatus.FAILED,
                    error="device_unregistered",
                    end_reason=DeliveryEnd.DEVICE_UNAVAILABLE,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            await finish_notifications(session, notification_ids, now=now, locked=True)

    async def postpone(
        self, items: Sequence[ClaimedDelivery], until: datetime, now: datetime
    ) -> None:
        """Give leased deliveries back, due again at ``until``, without using up an attempt."""
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

    async def record(self, results: Sequence[Result], now: datetime) -> Recorded:
        """Write each result to its delivery (only while this worker still holds the lease),
        apply token outcomes, and finish notifications whose deliveries are all done."""
        touched: set[str] = set()
        written: list[Result] = []
        invalidated: list[Result] = []
        async with transaction(self.sessions) as session:
            # Notifications first, then deliveries: the order every writer locks them in
            await lock_notifications(session, {result.item.notification.id for result in results})
            ours = await self._still_ours(session, [result.item.delivery_id for result in results])
            updates: dict[tuple[str, ...], list[dict[str, object]]] = defaultdict(list)
            for result in results:
                item, report = result.item, result.report
                if item.delivery_id not in ours:
                    # our lease ran out and another worker took over, or it was cancelled
                    log.warning(
                        "delivery %s is no longer ours (lease lost or cancelled); "
                        "dropping this result",
                        item.delivery_id,
                    )
                    continue
                row = {
                    "delivery_id": item.delivery_id,
                    **result.settled.columns(),
                    "lease_owner": None,
                    "lease_until": None,
                    "updated_at": now,
                }
                updates[tuple(row)].append(row)
                written.append(result)
                if result.sent and self.guard is not None:
                    self.guard.record(item.app, report, now)
                if report.is_token_dead:
                    said = f"{report.status or ''} {report.reason or ''}".strip()
                    outcome = await apply_report(
                        session,
                        item.device.id,
                        report,
                        now=now,
                        actor=f"{result.provider}:{said}",
                        guard=self.guard,
                    )
                    if outcome is TokenOutcome.INVALIDATED:
                        invalidated.append(result)
                if result.settled.status != DeliveryStatus.PENDING:
                    touched.add(item.notification.id)
            # One core executemany by primary key per set of columns written (a sent delivery
            # sets provider_id, a waiting one next_attempt_at): the ORM's bulk update did the
            # same statements with a good deal of bookkeeping per row.
            for rows in updates.values():
                await session.execute(_UPDATE_DELIVERY, rows)
            finished = await finish_notifications(session, touched, now=now, locked=True)
        return Recorded(written, invalidated, finished)

    async def _still_ours(self, session: AsyncSession, ids: list[str]) -> set[str]:
        """The deliveries among ``ids`` this worker still holds, locked until the commit."""
        query = select(Delivery.id).where(
            col(Delivery.id).in_(ids),
            col(Delivery.lease_owner) == self.owner,
            col(Delivery.status) == DeliveryStatus.PENDING,
        )
        if self.skip_locked:  # PostgreSQL; SQLite has one writer and no FOR UPDATE
            query = query.with_for_update()
        return set((await session.execute(query)).scalars())

    async def reclaim_expired_leases(self, now: datetime) -> dict[str | None, int]:
        """Clear leases that ran out (a worker died holding them) so any worker may take the
        work over; returns how many per former owner."""
        async with transaction(self.sessions) as session:
            owners = await session.execute(
                select(Delivery.lease_owner, sa.func.count())
                .where(
                    col(Delivery.status) == DeliveryStatus.PENDING,
                    col(Delivery.lease_until) < now,
                )
                .group_by(col(Delivery.lease_owner))
            )
            reclaimed = {owner: count for owner, count in owners.all()}
            if reclaimed:
                await session.execute(
                    sa.update(Delivery)
                    .where(
                        col(Delivery.status) == DeliveryStatus.PENDING,
                        col(Delivery.lease_until) < now,
                    )
                    .values(lease_owner=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )
        return reclaimed

    async def depth(self) -> int:
        """Pending deliveries, due or not."""
        async with self.sessions() as session:
            count = await session.execute(
                select(sa.func.count())
                .select_from(Delivery)
                .where(col(Delivery.status) == DeliveryStatus.PENDING)
            )
            return int(count.scalar_one())


async def finish_notifications(
    session: AsyncSession, notification_ids: set[str], *, now: datetime, locked: bool = False
) -> list[str]:
    """Give each queued notification whose deliveries have all ended its final status: ``sent``
    when at least one device got it; ``expired`` (reason ``expired``) when every delivery ran
    out of time; else ``failed``, each delivery's ``error`` saying why. Returns the ones
    finished. ``locked`` says the caller already holds :func:`lock_notifications` on them."""
    if not notification_ids:
        return []
    if not locked:
        await lock_notifications(session, notification_ids)
    end_reason = col(Delivery.end_reason)
    counts = await session.execute(
        sa.select(
            col(Delivery.notification_id),
            sa.func.count(),
            sa.func.sum(sa.case((col(Delivery.status) == DeliveryStatus.PENDING, 1), else_=0)),
            sa.func.sum(sa.case((col(Delivery.status) == DeliveryStatus.SENT, 1), else_=0)),
            sa.func.sum(sa.case((end_reason == DeliveryEnd.EXPIRED, 1), else_=0)),
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
    return [notification_id for ids in final.values() for notification_id in ids]
