"""The notification data path: request → policy → store → (delivery queue).

:func:`accept_notification` runs at ``POST /v1/notifications``; :func:`apply_decision` is shared
with the release job, which re-evaluates a deferred notification with the state of that moment.
Everything here runs inside the caller's transaction and takes ``now`` as a parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.api.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TierConflict,
    UnknownApp,
    ValidationFailed,
)
from gateway.api.schemas import NotificationOut, NotificationRequest
from gateway.config import ApiKeyConfig, Settings, parse_hhmm
from gateway.models import (
    PENDING_NOTIFICATION_STATUSES,
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationStatus,
    Preference,
)
from gateway.payloads import check_payload
from policies import (
    Decision,
    Defer,
    Drop,
    DropReason,
    FrequencyCap,
    PolicySettings,
    QuietWindow,
    Send,
    UserFacts,
    cap_window_start,
    classify,
    decide,
    resolve_expiry,
)
from policies import TierConflict as PolicyTierConflict
from policies.tiers import Tier
from tokens.models import Device, new_id
from tokens.registry import devices_of_users, is_deliverable, latest_timezone

log = logging.getLogger(__name__)


def build_policy_settings(settings: Settings) -> PolicySettings:
    """The pure policy module's view of the configuration."""
    policy = settings.policy
    return PolicySettings(
        default_timezone=policy.default_timezone,
        quiet_hours=QuietWindow(policy.quiet_hours.start, policy.quiet_hours.end),
        release_spread_minutes=policy.release_spread_minutes,
        behavioral_default_opt_in=policy.behavioral_default_opt_in,
        default_ttl_seconds=dict(policy.default_ttl_seconds),
        frequency_caps={
            tier: FrequencyCap(max=cap.max, window_seconds=cap.window_seconds)
            for tier, cap in policy.frequency_caps.items()
        },
        default_tier=policy.default_tier,
        categories=dict(settings.categories),
    )


def resolve_app(settings: Settings, requested: str | None, caller: ApiKeyConfig) -> str:
    """The app a request is for: named, or the only one configured; checked against the key."""
    if requested is None:
        if len(settings.apps) != 1:
            raise ValidationFailed(
                "app is required when more than one app is configured",
                errors=[],
            )
        requested = settings.apps[0].id
    if settings.app(requested) is None:
        known = ", ".join(app.id for app in settings.apps) or "none"
        raise UnknownApp(f"app {requested!r} is not configured (configured apps: {known})")
    if caller.apps is not None and requested not in caller.apps:
        raise Forbidden(
            f"API key {caller.name!r} may not send for app {requested!r}", code="app_not_allowed"
        )
    return requested


@dataclass
class UsersSnapshot:
    """What the policy needs to know about a set of users at one instant, loaded in a few
    queries: the release job decides a whole batch from one snapshot."""

    preferences: dict[str, Preference]
    devices: dict[str, list[Device]]
    recent_counts: dict[str, dict[Tier, int]]  # by user, then tier (capped tiers only)

    def facts(self, user_id: str, app: str) -> tuple[UserFacts, list[Device]]:
        """The user's facts for ``app``, and the devices a notification would go to."""
        preference = self.preferences.get(user_id)
        devices = self.devices.get(user_id, [])
        deliverable = [device for device in devices if is_deliverable(device, app)]
        facts = UserFacts(
            user_id=user_id,
            timezone=preference.timezone if preference else None,
            device_timezone=latest_timezone(devices),
            behavioral_opt_in=preference.behavioral if preference else None,
            promotional_opt_in=preference.promotional if preference else None,
            quiet_hours=quiet_window_of(preference),
            active_devices=len(deliverable),
            recent_counts=dict(self.recent_counts.get(user_id, {})),
        )
        return facts, deliverable

    def count_queued(self, user_id: str, tier: Tier) -> None:
        """A notification of the batch was just queued: it counts against the user's cap."""
        counts = self.recent_counts.get(user_id)
        if counts is not None and tier in counts:
            counts[tier] += 1


async def snapshot_users(
    session: AsyncSession, user_ids: Collection[str], *, now: datetime, policy: PolicySettings
) -> UsersSnapshot:
    """Preferences, devices and frequency-cap counts of ``user_ids`` at ``now``.

    A notification counts against its user's cap from when it is queued (``counted_at``);
    deferred ones have none yet, so one being released never counts against itself.
    """
    users = list(user_ids)
    preferences = (
        await session.execute(select(Preference).where(col(Preference.user_id).in_(users)))
    ).scalars()
    recent_counts: dict[str, dict[Tier, int]] = {user_id: {} for user_id in users}
    windows = []
    for tier in Tier:
        since = cap_window_start(now, tier, policy)
        if since is None:
            continue
        for counts in recent_counts.values():
            counts[tier] = 0
        windows.append(
            sa.and_(col(Notification.tier) == tier, col(Notification.counted_at) >= since)
        )
    if windows:  # every capped tier, each in its own window, in one query
        rows = await session.execute(
            sa.select(col(Notification.user_id), col(Notification.tier), sa.func.count())
            .where(col(Notification.user_id).in_(users), sa.or_(*windows))
            .group_by(col(Notification.user_id), col(Notification.tier))
        )
        for user_id, tier_name, count in rows.all():
            recent_counts[user_id][Tier(tier_name)] = count
    return UsersSnapshot(
        preferences={preference.user_id: preference for preference in preferences},
        devices=await devices_of_users(session, users),
        recent_counts=recent_counts,
    )


def quiet_window_of(preference: Preference | None) -> QuietWindow | None:
    if preference is None or preference.quiet_start is None or preference.quiet_end is None:
        return None
    return QuietWindow(parse_hhmm(preference.quiet_start), parse_hhmm(preference.quiet_end))


def format_hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def delivery_row(notification_id: str, device: Device, *, now: datetime) -> dict[str, Any]:
    """The pending delivery of a notification to ``device``: what the delivery worker picks up."""
    return {
        "id": new_id(),
        "notification_id": notification_id,
        "device_id": device.id,
        "platform": device.platform,
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def decision_fields(decision: Decision, *, now: datetime) -> dict[str, Any]:
    """The notification columns that record the policy's decision."""
    match decision:
        case Send():
            return {
                "status": NotificationStatus.QUEUED,
                "reason": None,
                "deliver_at": now,
                "counted_at": now,
            }
        case Defer(until=until, reason=reason):
            return {
                "status": NotificationStatus.DEFERRED,
                "reason": str(reason),
                "deliver_at": until,
            }
        case Drop(reason=reason):
            status = (
                NotificationStatus.EXPIRED
                if reason == DropReason.EXPIRED
                else NotificationStatus.DROPPED
            )
            return {"status": status, "reason": str(reason)}
    raise TypeError(f"not a decision: {decision!r}")


async def apply_decision(
    session: AsyncSession,
    notification: Notification,
    decision: Decision,
    devices: Sequence[Device],
    *,
    now: datetime,
) -> None:
    """Record the policy's decision on a stored notification; a send creates one pending
    delivery per device."""
    notification.updated_at = now
    for name, value in decision_fields(decision, now=now).items():
        setattr(notification, name, value)
    session.add(notification)
    if isinstance(decision, Send):
        for device in devices:
            session.add(Delivery(**delivery_row(notification.id, device, now=now)))


async def supersede_deferred(
    session: AsyncSession, *, user_id: str, app: str, collapse_key: str | None, now: datetime
) -> int:
    """A newer notification with the same user, app and collapse key replaces deferred ones."""
    if collapse_key is None:
        return 0
    result = await session.execute(
        sa.update(Notification)
        .where(
            col(Notification.user_id) == user_id,
            col(Notification.app) == app,
            col(Notification.collapse_key) == collapse_key,
            col(Notification.status) == NotificationStatus.DEFERRED,
        )
        .values(
            status=NotificationStatus.DROPPED,
            reason=DropReason.SUPERSEDED,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def lock_users(session: AsyncSession, user_ids: Collection[str]) -> None:
    """Serialise acceptances for these users until the transaction ends, so two concurrent
    requests cannot both count themselves under the frequency cap. The locks are taken in one
    statement, in sorted order, so two transactions locking overlapping sets cannot deadlock.
    PostgreSQL only: SQLite already runs one write transaction at a time."""
    if user_ids and session.get_bind().dialect.name == "postgresql":
        await session.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(hashtextextended(u, 7210431)) "
                "FROM (SELECT DISTINCT u FROM unnest(CAST(:ids AS text[])) AS u ORDER BY u) AS s"
            ),
            {"ids": sorted(set(user_ids))},
        )


async def try_lock_users(session: AsyncSession, user_ids: Collection[str]) -> set[str]:
    """The users of ``user_ids`` whose acceptance lock (see :func:`lock_users`) this transaction
    now holds, taken without waiting: a user being accepted for right now is left out. On SQLite
    every user (one write transaction at a time already)."""
    if session.get_bind().dialect.name != "postgresql":
        return set(user_ids)
    rows = await session.execute(
        sa.text(
            "SELECT u FROM unnest(CAST(:ids AS text[])) AS u "
            "WHERE pg_try_advisory_xact_lock(hashtextextended(u, 7210431))"
        ),
        {"ids": sorted(set(user_ids))},
    )
    return set(rows.scalars())


@dataclass(frozen=True, slots=True)
class Prepared:
    """A notification request that passed every check that needs no database: who sends it,
    for which app and tier, and until when it may be delivered."""

    request: NotificationRequest
    caller: ApiKeyConfig
    app: str
    tier: Tier
    classified_by: str
    expires_at: datetime


def prepare_notification(
    request: NotificationRequest,
    *,
    caller: ApiKeyConfig,
    settings: Settings,
    policy: PolicySettings,
    now: datetime,
) -> Prepared:
    """Classify and authorise one request and resolve its expiry. Raises
    :class:`GatewayError` subclasses for requests that must be refused."""
    app = resolve_app(settings, request.app, caller)
    try:
        classification = classify(request.category, request.tier, policy)
    except PolicyTierConflict as conflict:
        raise TierConflict(
            f"category {request.category!r} is {conflict.category_tier}, "
            f"but tier {conflict.requested_tier} was requested"
        ) from None
    tier = classification.tier
    if tier not in caller.allowed_tiers:
        allowed = ", ".join(caller.allowed_tiers)
        raise Forbidden(
            f"API key {caller.name!r} may not send {tier} notifications (allowed: {allowed})",
            code="tier_not_allowed",
        )
    expires_at = resolve_expiry(
        now, tier, policy, ttl_seconds=request.ttl_seconds, expires_at=request.expires_at
    )
    if expires_at <= now:
        raise ValidationFailed(
            f"expires_at {expires_at.isoformat()} is not in the future",
        )
    app_config = settings.app(app)
    assert app_config is not None  # resolve_app checked it
    check_payload(request, app=app_config, tier=tier, expires_at=expires_at)
    return Prepared(
        request=request,
        caller=caller,
        app=app,
        tier=tier,
        classified_by=classification.classified_by,
        expires_at=expires_at,
    )


async def store_notifications(
    session: AsyncSession, batch: Sequence[Prepared], *, policy: PolicySettings, now: datetime
) -> list[NotificationOut]:
    """Decide and store prepared notifications, in order, in the caller's transaction.

    One snapshot of the users serves the whole batch, and each one queued counts against its
    user's cap before the next is decided, so a batch decides exactly as the same requests
    one after another would. The rows go in as bulk inserts, not ORM objects.
    """
    users = [prepared.request.user_id for prepared in batch]
    await lock_users(session, users)
    snapshot = await snapshot_users(session, set(users), now=now, policy=policy)
    rows: list[dict[str, Any]] = []
    inserted = 0
    deliveries: list[dict[str, Any]] = []
    for prepared in batch:
        request = prepared.request
        facts, devices = snapshot.facts(request.user_id, prepared.app)
        decision = decide(now, prepared.tier, prepared.expires_at, facts, policy)
        row = {
            "id": new_id(),
            "user_id": request.user_id,
            "app": prepared.app,
            "tier": prepared.tier,
            "category": request.category,
            "classified_by": prepared.classified_by,
            "title": request.title,
            "body": request.body,
            "data": request.data,
            "collapse_key": request.collapse_key,
            "badge": request.badge,
            "sound": request.sound,
            "thread_id": request.thread_id,
            "sender": prepared.caller.name,
            "deliver_at": None,
            "expires_at": prepared.expires_at,
            "counted_at": None,
            "created_at": now,
            "updated_at": now,
            **decision_fields(decision, now=now),
        }
        if request.collapse_key is not None and isinstance(decision, Send | Defer):
            # earlier rows of this batch go in first, so this one supersedes them too
            await _insert(session, Notification, rows[inserted:])
            inserted = len(rows)
            await supersede_deferred(
                session,
                user_id=request.user_id,
                app=prepared.app,
                collapse_key=request.collapse_key,
                now=now,
            )
        if isinstance(decision, Send):
            snapshot.count_queued(request.user_id, prepared.tier)
            deliveries += [delivery_row(row["id"], device, now=now) for device in devices]
        rows.append(row)
    await _insert(session, Notification, rows[inserted:])
    await _insert(session, Delivery, deliveries)  # after the notifications they reference
    for row in rows:
        log.info(
            "accepted notification %s user=%s tier=%s status=%s reason=%s sender=%s",
            row["id"],
            row["user_id"],
            row["tier"],
            row["status"],
            row["reason"],
            row["sender"],
        )
    return [NotificationOut.model_validate(row) for row in rows]


async def _insert(
    session: AsyncSession, model: type[Notification] | type[Delivery], rows: list[dict[str, Any]]
) -> None:
    if rows:
        await session.execute(sa.insert(model), rows)


async def accept_notification(
    session: AsyncSession,
    request: NotificationRequest,
    *,
    caller: ApiKeyConfig,
    settings: Settings,
    policy: PolicySettings,
    now: datetime,
) -> NotificationOut:
    """Classify, authorise, decide and store one notification. Raises :class:`GatewayError`
    subclasses for requests that must be refused (nothing is stored then)."""
    prepared = prepare_notification(
        request, caller=caller, settings=settings, policy=policy, now=now
    )
    (notification,) = await store_notifications(session, [prepared], policy=policy, now=now)
    return notification


async def get_notification(session: AsyncSession, notification_id: str) -> Notification:
    notification = await session.get(Notification, notification_id)
    if notification is None:
        raise NotFound(f"no notification with id {notification_id!r}")
    return notification


async def deliveries_of(session: AsyncSession, notification_id: str) -> Sequence[Delivery]:
    result = await session.execute(
        select(Delivery)
        .where(Delivery.notification_id == notification_id)
        .order_by(col(Delivery.created_at), col(Delivery.id))
    )
    return result.scalars().all()


async def cancel_notification(
    session: AsyncSession, notification_id: str, *, now: datetime
) -> Notification:
    """Cancel a deferred or queued notification; its pending deliveries end ``failed`` with
    error ``cancelled``. Raises 409 ``not_cancellable`` otherwise."""
    # Lock and re-read the row: a worker finishing it (or the release job) may hold it, and
    # its status after that commit, not the one read before, decides whether it can be
    # cancelled. Without this a just-sent notification was overwritten with "cancelled".
    notification = await session.get(
        Notification, notification_id, with_for_update=True, populate_existing=True
    )
    if notification is None:
        raise NotFound(f"no notification with id {notification_id!r}")
    if notification.status not in PENDING_NOTIFICATION_STATUSES:
        raise Conflict(
            f"notification {notification_id} is {notification.status}; only deferred or queued "
            "notifications can be cancelled",
            code="not_cancellable",
        )
    notification.status = NotificationStatus.CANCELLED
    notification.reason = None
    notification.updated_at = now
    session.add(notification)
    await session.execute(
        sa.update(Delivery)
        .where(
            col(Delivery.notification_id) == notification_id,
            col(Delivery.status) == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.FAILED, error="cancelled", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return notification
