"""The notification data path up to the queue: request → policy → store.

:func:`prepare_notification` checks one request without the database (app, tier, caller,
schedule, expiry, payload); :func:`store_notifications` decides a group of prepared requests
from one snapshot of their users and stores them, with one pending delivery per device for
those that may go now. A send scheduled in the user's local time is resolved there, since only
the snapshot knows the user's zone, and may still be refused then (its moment already past,
say) without failing the rest of the group. :func:`decision_fields` and :func:`decision_record`
are shared with the release job, which decides a deferred notification again with the state of
its moment. Everything here runs inside the caller's transaction and takes ``now`` as a
parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.config import Settings
from gateway.errors import (
    FieldError,
    GatewayError,
    PayloadTooLarge,
    TierConflict,
    ValidationFailed,
)
from gateway.logs import current_request_id
from gateway.models import (
    Delivery,
    DeliveryStatus,
    Notification,
    NotificationStatus,
)
from gateway.providers.base import AppProfile, PayloadRejected, PushMessage
from gateway.providers.registry import PROVIDERS
from gateway.schemas import NotificationOut, NotificationRequest
from gateway.services.access import Caller, resolve_app
from gateway.services.snapshot import lock_users, snapshot_users
from policies import (
    Decision,
    Defer,
    Drop,
    DropReason,
    Explanation,
    LocalSchedule,
    LocalSendTime,
    PolicySettings,
    Send,
    UserFacts,
    check_schedule,
    classify,
    decide_and_explain,
    locate_user,
    parse_send_at_local,
    resolve_expiry,
    schedule_local,
)
from policies import TierConflict as PolicyTierConflict
from policies.tiers import Tier
from tokens.models import DeviceState, new_id

log = logging.getLogger(__name__)


WALL_TIME_FORMAT = "%Y-%m-%dT%H:%M"  # how a scheduled local date and time is stored


@dataclass(frozen=True, slots=True)
class Prepared:
    """A notification request that passed every check that needs no database: who sends it,
    for which app and tier, when, and until when it may be delivered."""

    request: NotificationRequest
    caller: Caller
    app: str
    tier: Tier
    classified_by: str
    expires_at: datetime | None
    """None for a ``send_at_local``: its expiry counts from its instant, known with the
    user's zone when it is stored."""
    send_at: datetime | None = None
    """The instant a ``send_at`` still ahead schedules it for."""
    local: LocalSendTime | None = None
    """A ``send_at_local``, resolved when it is stored."""
    request_id: str | None = None  # the HTTP request's id, for the log events it causes


def prepare_notification(
    request: NotificationRequest,
    *,
    caller: Caller,
    settings: Settings,
    policy: PolicySettings,
    now: datetime,
) -> Prepared:
    """Classify and authorise one request and resolve its expiry. Raises
    :class:`~gateway.errors.GatewayError` subclasses for requests that must be refused."""
    app = resolve_app(settings, request.app, caller)
    try:
        classification = classify(request.category, request.tier, policy)
    except PolicyTierConflict as conflict:
        raise TierConflict(
            f"category {request.category!r} is {conflict.category_tier}, "
            f"but tier {conflict.requested_tier} was requested"
        ) from None
    tier = classification.tier
    caller.check_tier(tier)
    send_at = _scheduled_instant(request, policy=policy, now=now)
    local = parse_send_at_local(request.send_at_local) if request.send_at_local else None
    expires_at: datetime | None = None
    if local is None:
        expires_at = _expiry_from(send_at or now, request, tier, policy)
    elif request.expires_at is not None and request.expires_at <= now:
        # certainly not after a moment still to come: no need to know the user's zone
        raise _expiry_problem(request.expires_at, "is not in the future")
    app_config = settings.app(app)
    assert app_config is not None  # resolve_app checked it
    check_deliverable(
        request,
        app=app_config.profile,
        tier=tier,
        expires_at=expires_at or resolve_expiry(now, tier, policy),
    )
    return Prepared(
        request=request,
        caller=caller,
        app=app,
        tier=tier,
        classified_by=classification.classified_by,
        expires_at=expires_at,
        send_at=send_at,
        local=local,
        request_id=current_request_id(),
    )


def _scheduled_instant(
    request: NotificationRequest, *, policy: PolicySettings, now: datetime
) -> datetime | None:
    """The instant a ``send_at`` schedules the request for, or None to send now (none given,
    or a moment already come). 422 beyond ``policy.max_schedule_days``."""
    if request.send_at is None:
        return None
    send_at = request.send_at.astimezone(UTC)
    if send_at <= now:
        return None
    try:
        check_schedule(now, send_at, policy.max_schedule_days)
    except ValueError as exc:
        raise ValidationFailed(
            f"send_at: {exc}", errors=[FieldError("send_at", str(exc))]
        ) from None
    return send_at


def _expiry_from(
    start: datetime, request: NotificationRequest, tier: Tier, policy: PolicySettings
) -> datetime:
    """The request's expiry, its TTL counted from ``start`` (now, or its scheduled instant);
    422 unless it is after ``start``."""
    expires_at = resolve_expiry(
        start, tier, policy, ttl_seconds=request.ttl_seconds, expires_at=request.expires_at
    )
    if expires_at <= start:
        scheduled = request.send_at is not None or request.send_at_local is not None
        raise _expiry_problem(
            expires_at,
            f"is not after the scheduled moment {start.isoformat()}"
            if scheduled
            else "is not in the future",
        )
    return expires_at


def _expiry_problem(expires_at: datetime, problem: str) -> ValidationFailed:
    message = f"expires_at {expires_at.isoformat()} {problem}"
    return ValidationFailed(message, errors=[FieldError("expires_at", problem)])


def schedule_in_users_zone(
    prepared: Prepared, facts: UserFacts, policy: PolicySettings, *, now: datetime
) -> tuple[LocalSchedule, datetime]:
    """Resolve a prepared ``send_at_local`` in the user's zone: the schedule and the expiry
    counted from its instant. 422 when that instant is not after ``now`` or lies beyond
    ``policy.max_schedule_days``, or when the request's ``expires_at`` is not after it."""
    assert prepared.local is not None
    request = prepared.request
    zone, _ = locate_user(facts, policy)
    try:
        schedule = schedule_local(now, zone, prepared.local)
        check_schedule(now, schedule.instant, policy.max_schedule_days)
    except ValueError as exc:
        raise ValidationFailed(
            f"send_at_local {request.send_at_local!r} in {zone.key}: {exc}",
            errors=[FieldError("send_at_local", f"in {zone.key}: {exc}")],
        ) from None
    return schedule, _expiry_from(schedule.instant, request, prepared.tier, policy)


def check_deliverable(
    request: NotificationRequest, *, app: AppProfile, tier: Tier, expires_at: datetime
) -> None:
    """Refuse, at acceptance, what some provider would refuse at delivery: 422 for a reserved
    data key, 413 for a payload over a provider's size limit. Every provider is asked, since
    the user's devices (and so the providers) are only known when it is delivered."""
    message = PushMessage(
        token="",
        tier=tier,
        expires_at=expires_at,
        title=request.title,
        body=request.body,
        data=request.data or {},
        badge=request.badge,
        sound=request.sound,
        thread_id=request.thread_id,
        collapse_key=request.collapse_key,
    )
    rejections: list[PayloadRejected] = []
    for provider in PROVIDERS.values():
        try:
            provider.check_payload(message, app)
        except PayloadRejected as exc:
            rejections.append(exc)
    # a malformed payload is worth fixing before its size is
    for problem in sorted(rejections, key=lambda rejection: rejection.too_large):
        if problem.too_large:
            raise PayloadTooLarge(str(problem))
        errors = [FieldError(problem.field, "reserved key")] if problem.field else []
        raise ValidationFailed(str(problem), errors=errors)


def delivery_row(notification_id: str, device: DeviceState, *, now: datetime) -> dict[str, Any]:
    """The pending delivery of a notification to ``device``: what the delivery worker picks up."""
    return {
        "id": new_id(),
        "notification_id": notification_id,
        "device_id": device.id,
        "platform": device.platform,
        "app": device.app,
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def decision_fields(decision: Decision, *, now: datetime) -> dict[str, Any]:
    """The notification columns that carry out the policy's decision (not its record: see
    :func:`decision_record`)."""
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


def decision_record(
    decision: Decision,
    explanation: Explanation,
    *,
    now: datetime,
    replaces: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``decision`` column: the explanation (as the API shows it), what the decision did
    (``status``, ``reason``, ``deliver_at`` of a deferral), and under ``earlier`` the
    decisions it replaces, oldest first (``replaces`` is the record in force until now)."""
    fields = decision_fields(decision, now=now)
    record = explanation.as_dict()
    record["status"] = str(fields["status"])
    record["reason"] = fields["reason"]
    record["deliver_at"] = decision.until.isoformat() if isinstance(decision, Defer) else None
    if replaces is not None:
        earlier = replaces.get("earlier", [])
        record["earlier"] = [
            *earlier,
            {name: value for name, value in replaces.items() if name != "earlier"},
        ]
    return record


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


async def store_notifications(
    session: AsyncSession, batch: Sequence[Prepared], *, policy: PolicySettings, now: datetime
) -> list[NotificationOut | GatewayError]:
    """Decide and store prepared notifications, in order, in the caller's transaction; returns
    for each the stored notification, or the error that refused it (a ``send_at_local`` whose
    moment, read in the user's zone, is not acceptable).

    One snapshot of the users serves the whole batch, and each one queued counts against its
    user's cap before the next is decided, so a batch decides exactly as the same requests
    one after another would. The rows go in as bulk inserts, not ORM objects.
    """
    users = [prepared.request.user_id for prepared in batch]
    await lock_users(session, users)
    snapshot = await snapshot_users(session, set(users), now=now, policy=policy)
    results: list[NotificationOut | GatewayError] = []
    rows: list[dict[str, Any]] = []
    inserted = 0
    deliveries: list[dict[str, Any]] = []
    for prepared in batch:
        request = prepared.request
        facts, devices = snapshot.facts(request.user_id, prepared.app)
        schedule: LocalSchedule | None = None
        if prepared.local is not None:
            try:
                schedule, expires_at = schedule_in_users_zone(prepared, facts, policy, now=now)
            except GatewayError as refusal:
                results.append(refusal)
                continue
            send_at: datetime | None = schedule.instant
        else:
            assert prepared.expires_at is not None
            expires_at, send_at = prepared.expires_at, prepared.send_at
        decision, explanation = decide_and_explain(
            now, prepared.tier, expires_at, facts, policy, scheduled_at=send_at
        )
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
            "request_id": prepared.request_id,
            "deliver_at": None,
            "expires_at": expires_at,
            "counted_at": None,
            "created_at": now,
            "updated_at": now,
            "send_at": send_at,
            "send_at_local": request.send_at_local,
            "scheduled_wall_time": schedule.wall.strftime(WALL_TIME_FORMAT) if schedule else None,
            "scheduled_zone": schedule.zone if schedule else None,
            "decision": decision_record(decision, explanation, now=now),
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
        results.append(NotificationOut.model_validate(row))
    await _insert(session, Notification, rows[inserted:])
    await _insert(session, Delivery, deliveries)  # after the notifications they reference
    for row in rows:
        log_accepted(row)
    return results


def log_accepted(row: dict[str, Any]) -> None:
    """The ``notification.accepted`` event of a stored notification (never its title, body
    or data). It is logged by the group's writer, so the request id comes with the row."""
    log.info(
        "accepted notification %s user=%s tier=%s status=%s reason=%s sender=%s",
        row["id"],
        row["user_id"],
        row["tier"],
        row["status"],
        row["reason"],
        row["sender"],
        extra={
            "event": "notification.accepted",
            "request_id": row["request_id"],
            "notification_id": row["id"],
            "user_id": row["user_id"],
            "app": row["app"],
            "tier": str(row["tier"]),
            "category": row["category"],
            "status": str(row["status"]),
            "reason": row["reason"],
            "sender": row["sender"],
            "deliver_at": _iso(row["deliver_at"]),
            "expires_at": _iso(row["expires_at"]),
        },
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _insert(
    session: AsyncSession, model: type[Notification] | type[Delivery], rows: list[dict[str, Any]]
) -> None:
    # a core insert of the table: the ORM's bulk insert does the same statement with
    # bookkeeping per row (it was the largest share of storing a group)
    if rows:
        table = cast(sa.Table, model.__table__)  # type: ignore[union-attr]
        await session.execute(sa.insert(table), rows)
