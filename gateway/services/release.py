"""Releasing deferred notifications when their ``deliver_at`` comes.

Deferred notifications are rows (``status = 'deferred'``, indexed by ``deliver_at``), not
APScheduler jobs: APScheduler 3.x job stores cannot be shared by several processes, and
millions of one-off jobs do not belong in one. A single interval job per process,
:func:`release_due_notifications`, claims due rows in batches (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two processes never release the same row) and re-evaluates the policy with the
state of that moment: consent withdrawn overnight, device pruned, cap reached, user moved time
zone. Each notification is then queued, deferred again, or ends ``dropped``/``expired`` with
its reason, and its ``decision`` becomes the one made now.

A send scheduled in the user's local time follows the user: when the zone read from their
preferences and devices is no longer the one it was resolved in, the same local date and time
is read in the new zone. Still ahead, it waits for that (reason ``scheduled``); already past,
it is decided now like any other.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from gateway.db import transaction
from gateway.models import Delivery, Notification, NotificationStatus
from gateway.services.acceptance import decision_fields, decision_record, delivery_row
from gateway.services.snapshot import UsersSnapshot, snapshot_users, try_lock_users
from policies import (
    Decision,
    Defer,
    DeferReason,
    Drop,
    LocalSchedule,
    PolicySettings,
    Send,
    UserFacts,
    decide_and_explain,
    follow_user,
    locate_user,
)
from policies.tiers import Tier
from tokens.models import DeviceState

log = logging.getLogger(__name__)


RELEASE_RETRY_DELAY = timedelta(minutes=5)

_notifications = cast(sa.Table, Notification.__table__)  # type: ignore[attr-defined]
_deliveries = cast(sa.Table, Delivery.__table__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class DueNotification:
    """The columns of a deferred notification that releasing it needs, as plain values."""

    id: str
    user_id: str
    app: str
    tier: str
    expires_at: datetime
    reason: str | None
    send_at: datetime | None
    scheduled_wall_time: str | None
    scheduled_zone: str | None
    decision: dict[str, Any] | None
    request_id: str | None

    @classmethod
    def columns(cls) -> list[sa.Column[Any]]:
        return [_notifications.c[name] for name in cls.__dataclass_fields__]


@dataclass
class ReleaseResult:
    queued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # errors: left deferred, retried later
    deferred_again: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    decided: list[tuple[DueNotification, Decision, dict[str, Any]]] = field(default_factory=list)
    """Each released notification, its decision and the columns it wrote; logged once the
    batch is committed."""

    @property
    def released(self) -> int:
        return len(self.queued) + self.deferred_again + sum(self.dropped.values())


async def release_due_notifications(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    policy: PolicySettings,
    batch_size: int,
    skip_locked: bool,
) -> ReleaseResult:
    """Release one batch of deferred notifications due at ``now``, in one transaction.

    Set-based: one select of the due rows (as plain values), one snapshot of their users, a
    pure decision for each, then one statement per kind of write for the whole batch (the
    notifications' new columns by primary key, the deliveries of the ones sent). At the peak
    of a night's release, that is what keeps the wave at the provider's pace.
    """
    result = ReleaseResult()
    async with transaction(sessions) as session:
        query = (
            sa.select(*DueNotification.columns())
            .where(
                _notifications.c.status == NotificationStatus.DEFERRED,
                _notifications.c.deliver_at <= now,
            )
            .order_by(_notifications.c.deliver_at)
            .limit(batch_size)
        )
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        due = [DueNotification(*row) for row in await session.execute(query)]
        # A user being accepted for right now could otherwise be counted under the cap twice,
        # once here and once there. Their rows wait for the next run; never waiting for the lock
        # (this transaction already holds row locks) is what keeps the two from deadlocking.
        free = await try_lock_users(session, {notification.user_id for notification in due})
        due = [notification for notification in due if notification.user_id in free]
        snapshot = await snapshot_users(
            session, {notification.user_id for notification in due}, now=now, policy=policy
        )
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        deliveries: list[dict[str, Any]] = []
        for notification in due:
            try:
                columns, sent_to = release_one(
                    notification, snapshot, now=now, policy=policy, result=result
                )
            except Exception:
                # One row that cannot be decided must not hold back the rest of the batch (it
                # would roll back every tick): it stays deferred, retried later, and says why.
                log.exception(
                    "could not release notification %s; retrying it in %s",
                    notification.id,
                    RELEASE_RETRY_DELAY,
                )
                columns = {"deliver_at": now + RELEASE_RETRY_DELAY}
                sent_to = []
                result.failed.append(notification.id)
            row = {"notification_id": notification.id, **columns, "updated_at": now}
            updates[tuple(row)].append(row)
            deliveries += [delivery_row(notification.id, device, now=now) for device in sent_to]
        # one executemany by primary key per set of columns written
        for rows in updates.values():
            await session.execute(_UPDATE_NOTIFICATION, rows)
        if deliveries:
            await session.execute(sa.insert(_deliveries), deliveries)
    for notification, decision, columns in result.decided:
        log_release_decision(notification, decision, columns)
    if result.released:
        log.info(
            "released %d deferred notifications: %d queued, %d deferred again, dropped %s",
            result.released,
            len(result.queued),
            result.deferred_again,
            result.dropped or "none",
        )
    return result


_UPDATE_NOTIFICATION = sa.update(_notifications).where(
    _notifications.c.id == sa.bindparam("notification_id")
)


def release_one(
    notification: DueNotification,
    snapshot: UsersSnapshot,
    *,
    now: datetime,
    policy: PolicySettings,
    result: ReleaseResult,
) -> tuple[dict[str, Any], list[DeviceState]]:
    """Decide a due notification again with the state of ``now``: the columns to write, and
    the devices it goes to when it is sent now."""
    facts, devices = snapshot.facts(notification.user_id, notification.app)
    tier = Tier(notification.tier)
    schedule = scheduled_instant(notification, facts, policy)
    decision, explanation = decide_and_explain(
        now,
        tier,
        notification.expires_at,
        facts,
        policy,
        scheduled_at=schedule.instant if schedule is not None else None,
    )
    columns = decision_fields(decision, now=now)
    columns["decision"] = decision_record(
        decision, explanation, now=now, replaces=notification.decision
    )
    if schedule is not None and schedule.moved:
        columns["send_at"] = schedule.instant
        columns["scheduled_zone"] = schedule.zone
    result.decided.append((notification, decision, columns))
    match decision:
        case Send():
            snapshot.count_queued(notification.user_id, tier)
            result.queued.append(notification.id)
            return columns, devices
        case Defer():
            result.deferred_again += 1
        case Drop(reason=reason):
            key = str(reason)
            result.dropped[key] = result.dropped.get(key, 0) + 1
    return columns, []


def log_release_decision(
    notification: DueNotification, decision: Decision, columns: dict[str, Any]
) -> None:
    """The ``notification.released`` event: what the policy decided for a deferred
    notification when it came due (sent now, deferred again, or dropped, with why)."""
    verdict = type(decision).__name__.lower()  # send, defer or drop
    deliver_at = decision.until if isinstance(decision, Defer) else None
    status = str(columns["status"])
    log.info(
        "released notification %s: %s (status %s, reason %s)",
        notification.id,
        verdict,
        status,
        columns["reason"],
        extra={
            "event": "notification.released",
            "request_id": notification.request_id,
            "notification_id": notification.id,
            "user_id": notification.user_id,
            "app": notification.app,
            "tier": notification.tier,
            "decision": verdict,
            "status": status,
            "reason": columns["reason"],
            "deliver_at": deliver_at.isoformat() if deliver_at is not None else None,
        },
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a scheduled notification is due, in which zone, and whether that moved."""

    instant: datetime
    zone: str | None
    moved: bool


def scheduled_instant(
    notification: DueNotification, facts: UserFacts, policy: PolicySettings
) -> Schedule | None:
    """The instant a notification still waiting for its schedule is due at, for the user as
    they are now; None when it waits for nothing the caller asked (quiet hours).

    A ``send_at`` is a fixed instant. A ``send_at_local`` read in another zone than the user's
    current one moves to the same wall time there (``moved``: its ``send_at`` and
    ``scheduled_zone`` are to be updated).
    """
    if notification.reason != DeferReason.SCHEDULED or notification.send_at is None:
        return None
    wall, zone = notification.scheduled_wall_time, notification.scheduled_zone
    if wall is None or zone is None:
        return Schedule(notification.send_at, zone, moved=False)
    kept = LocalSchedule(datetime.fromisoformat(wall), zone, notification.send_at)
    moved = follow_user(kept, locate_user(facts, policy)[0])
    if moved is kept:
        return Schedule(kept.instant, kept.zone, moved=False)
    log.info(
        "notification %s was scheduled for %s in %s; the user is now in %s: due at %s",
        notification.id,
        wall,
        zone,
        moved.zone,
        moved.instant.isoformat(),
    )
    return Schedule(moved.instant, moved.zone, moved=True)


HOURS_AHEAD = 24


def release_hour_edges(now: datetime) -> list[datetime]:
    """``now``, then the next 24 full hours: the first bucket runs from now to the next hour."""
    top_of_hour = now.replace(minute=0, second=0, microsecond=0)
    return [now] + [top_of_hour + timedelta(hours=h) for h in range(1, HOURS_AHEAD + 1)]


@dataclass(frozen=True, slots=True)
class DeferredHistogram:
    """Deferred notifications by release hour, ``[overdue, hour 1, ..., hour 24, later]``
    against :func:`release_hour_edges`, for each reason they wait for (``quiet_hours``,
    ``scheduled``): the night's releases and the callers' schedules are different loads."""

    by_reason: dict[str, list[int]]

    @property
    def totals(self) -> list[int]:
        """Every reason together, hour by hour."""
        return [sum(counts) for counts in zip(*self.by_reason.values(), strict=True)]


async def deferred_release_histogram(
    session: AsyncSession, *, now: datetime, app: str | None = None
) -> DeferredHistogram:
    """Deferred notifications by reason and release hour, in one indexed scan."""
    edges = release_hour_edges(now)
    deliver_at = col(Notification.deliver_at)
    buckets = [sa.func.count(sa.case((deliver_at < now, 1)))]
    buckets += [
        sa.func.count(sa.case((sa.and_(deliver_at >= start, deliver_at < end), 1)))
        for start, end in itertools.pairwise(edges)
    ]
    buckets.append(sa.func.count(sa.case((deliver_at >= edges[-1], 1))))
    reason = col(Notification.reason)
    query = (
        sa.select(reason, *buckets)
        .where(col(Notification.status) == NotificationStatus.DEFERRED)
        .group_by(reason)
    )
    if app is not None:
        query = query.where(col(Notification.app) == app)
    empty = [0] * len(buckets)
    by_reason = {str(DeferReason.QUIET_HOURS): empty, str(DeferReason.SCHEDULED): empty}
    for row in (await session.execute(query)).all():
        by_reason[row[0] or "none"] = list(row[1:])
    return DeferredHistogram(by_reason)
