"""Users' permission history: what apps report, what it allows them to ask, and the funnel.

The app's backend reports each step of a user's way to notification permission (a value moment,
the soft ask shown and answered, the OS prompt and its answer, the Settings screen), asks
whether it may show its soft ask now, and reads what the user missed for lack of a device that
could take it. Product teams read the opt-in funnel. The rules of the soft ask are the pure
:func:`policies.soft_ask_decision`; this module feeds it and keeps the history.

**Devices.** An OS prompt answer reported with a ``device_id`` sets that device's permission
(the registry's :func:`tokens.change_permission`, which keeps an audit event). A "yes" reported
without one goes to the user's undecided devices of that app and platform
(:func:`tokens.grant_undecided_devices`): the soft ask's first rule reads devices, and would
otherwise ask again a user who just said yes. A "no" without a device changes no device: the
soft ask sees the denial in the history, and marking denied a device that may not be the one
asked would stop its deliveries. A registration that changes a device's permission is stored as
an ``os_prompt_result`` too (source ``registration``), so the history also holds the changes a
user makes in the system Settings.

**The soft ask** reads the permission of the user's *active* devices only: an invalid token
(the app was uninstalled) or a stale one (not seen for months) no longer stands for an install
that can show a notification, so its old ``granted`` must not stop the app from asking on the
install the user has now.

**The funnel** counts distinct users per step in a window. Counting them from the events alone
means reading and de-duplicating every event in the window, so each stored event also writes
its step into two rollups, in its own transaction:

- ``permission_funnel_users``: per user, app, step and platform (and once for any platform),
  the last UTC day the user reached the step. A window without an end (the default: the last
  30 days until now) is then a count of the rows whose last day is in it, a range of an index,
  with no distinct users to collect.
- ``permission_funnel_days``: one row per app, UTC day, platform, step and user. A window with
  an end reads its whole days there, a range of a key that leads with app and day, and counts
  the distinct (step, user) pairs: the cost follows the days in the window, not the history.

The partial days at either end of a window (``since`` and ``until`` are exact instants) are
read from the events, indexed by app and instant. Measured in
``bench/bench_permission_funnel.py`` and in docs/permission.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.db import transaction
from gateway.errors import FieldError, ValidationFailed
from gateway.metrics import Metrics
from gateway.models import (
    ALL_PLATFORMS,
    Notification,
    NotificationStatus,
    PermissionEventRecord,
    PermissionEventSource,
    PermissionFunnelDay,
    PermissionFunnelUser,
)
from gateway.schemas import (
    FunnelCounts,
    FunnelOut,
    FunnelQuery,
    FunnelRates,
    MissedOut,
    MissedQuery,
    PermissionEventOut,
    PermissionEventReport,
    SoftAskOut,
    SoftAskQuery,
)
from gateway.services.access import Caller, resolve_app
from gateway.services.context import ServiceContext
from policies import (
    DropReason,
    FunnelStep,
    OsPromptResult,
    PermissionEvent,
    PermissionEventKind,
    Tier,
    funnel_step,
    soft_ask_decision,
)
from tokens import change_permission, grant_undecided_devices
from tokens.models import Device, DeviceStatus, Permission

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of now an event may be dated: device clocks run fast."""
DEFAULT_WINDOW = timedelta(days=30)
"""The funnel's window, and how far back "missed" looks, when the caller does not say."""

# Answers the OS prompt can give, as device permissions (the names are the same).
_ANSWERS = frozenset(result.value for result in OsPromptResult)


class _AlreadyRecorded(Exception):
    """A concurrent request stored the same event_id first: roll back and answer with it."""


class PermissionService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context
        self._rules = context.settings.permission.rules()

    # -- the history ---------------------------------------------------------------------------

    async def record(
        self, caller: Caller, user_id: str, report: PermissionEventReport
    ) -> tuple[PermissionEventOut, bool]:
        """Store a reported event; returns it and True, or, for an ``event_id`` already stored
        for the user in the app, the first record and False (nothing is stored or counted)."""
        context = self._context
        app = resolve_app(context.settings, report.app, caller)
        now = context.clock().astimezone(UTC)
        at = report.at.astimezone(UTC) if report.at is not None else now
        if at > now + MAX_CLOCK_SKEW:
            message = f"at is more than 5 minutes after now ({now.isoformat()})"
            raise ValidationFailed(message, errors=[FieldError("at", message)])
        try:
            async with transaction(context.sessions) as session:
                if report.event_id is not None:
                    first = await _find_event_id(session, user_id, app, report.event_id)
                    if first is not None:
                        return first, False
                stored = await self._store(
                    session, report, caller=caller, user_id=user_id, app=app, at=at, now=now
                )
        except _AlreadyRecorded:
            assert report.event_id is not None
            async with context.sessions() as session:
                first = await _find_event_id(session, user_id, app, report.event_id)
            assert first is not None  # the row that won the race is committed
            return first, False
        count_permission_event(context.metrics, stored)
        log.info(
            "permission event %s %s user=%s app=%s platform=%s by %s",
            stored.event,
            stored.result or "",
            user_id,
            app,
            stored.platform,
            caller.name,
        )
        return stored, True

    async def _store(
        self,
        session: AsyncSession,
        report: PermissionEventReport,
        *,
        caller: Caller,
        user_id: str,
        app: str,
        at: datetime,
        now: datetime,
    ) -> PermissionEventOut:
        actor = f"api:{caller.name}"
        platform = report.platform
        previous_permission = None
        device: Device | None = None
        if report.device_id is not None:
            device = await _device_of_user(session, report.device_id, user_id, app)
            if platform is not None and platform != device.platform:
                message = f"device {device.id} is an {device.platform} device, not {platform}"
                raise ValidationFailed(message, errors=[FieldError("platform", message)])
        platform_name = device.platform if device is not None else str(platform)
        result = report.result
        if result is not None:
            if device is not None:
                previous_permission = device.permission
                change_permission(session, device, result.value, now=now, actor=actor)
            elif result == OsPromptResult.GRANTED:
                await grant_undecided_devices(
                    session, user_id=user_id, app=app, platform=platform_name, now=now, actor=actor
                )
        values = {
            "user_id": user_id,
            "app": app,
            "platform": platform_name,
            "event": report.event.value,
            "result": result.value if result is not None else None,
            "device_id": report.device_id,
            "event_id": report.event_id,
            "source": PermissionEventSource.REPORTED.value,
            "reported_by": caller.name,
            "previous_permission": previous_permission,
            "funnel_step": funnel_step(report.event, result).value,
            "re_enabled": _re_enables(previous_permission, result),
            "at": at,
            "recorded_at": now,
        }
        return await _insert_event(session, values)

    # -- the soft ask --------------------------------------------------------------------------

    async def soft_ask(self, caller: Caller, user_id: str, query: SoftAskQuery) -> SoftAskOut:
        """What the app may show the user now: its soft ask, its Settings screen, or nothing."""
        context = self._context
        app = resolve_app(context.settings, query.app, caller)
        platform = query.platform.value
        now = context.clock()
        async with context.sessions() as session:
            rows = await session.execute(
                sa.select(
                    col(PermissionEventRecord.event),
                    col(PermissionEventRecord.at),
                    col(PermissionEventRecord.result),
                )
                .where(
                    col(PermissionEventRecord.user_id) == user_id,
                    col(PermissionEventRecord.app) == app,
                    col(PermissionEventRecord.platform) == platform,
                )
                # the rules break ties of equal instants by the order given: the recorded one
                .order_by(col(PermissionEventRecord.at), col(PermissionEventRecord.id))
            )
            events = [
                PermissionEvent(
                    PermissionEventKind(event),
                    at,
                    OsPromptResult(result) if result is not None else None,
                )
                for event, at, result in rows
            ]
            permissions = await session.execute(
                sa.select(col(Device.permission)).where(
                    col(Device.user_id) == user_id,
                    col(Device.app) == app,
                    col(Device.platform) == platform,
                    col(Device.status) == DeviceStatus.ACTIVE,
                )
            )
            device_permissions = list(permissions.scalars())
        decision = soft_ask_decision(now, events, device_permissions, self._rules)
        return SoftAskOut(
            action=decision.action, reason=decision.reason, retry_at=decision.retry_at
        )

    # -- the funnel ----------------------------------------------------------------------------

    async def funnel(self, caller: Caller, app: str, query: FunnelQuery) -> FunnelOut:
        """Distinct users per funnel step of ``app`` in ``[since, until)``, and the rates.

        Without ``until`` the window has no end, so what was reported a moment ago (or dated a
        little ahead by a fast device clock) counts. Without ``since`` it starts 30 days before
        ``until`` or, with neither, at the start of the UTC day 29 days ago: the last 30 days,
        today included, in whole days (which the rollups answer for alone).
        """
        context = self._context
        app = resolve_app(context.settings, app, caller)
        until = query.until
        since = query.since
        if since is None and until is not None:
            since = until - DEFAULT_WINDOW
        elif since is None:
            today = context.clock().astimezone(UTC).date()
            since = datetime.combine(today, time(), tzinfo=UTC) - DEFAULT_WINDOW + timedelta(days=1)
        if until is not None and since >= until:
            message = "since must be before until"
            raise ValidationFailed(message, errors=[FieldError("since", message)])
        platform = query.platform.value if query.platform is not None else None
        async with context.sessions() as session:
            reached = await count_funnel_users(
                session, app=app, platform=platform, since=since, until=until
            )
        counts = FunnelCounts(**{step.value: reached.get(step, 0) for step in FunnelStep})
        return FunnelOut(
            app=app,
            platform=query.platform,
            since=since,
            until=until,
            counts=counts,
            rates=funnel_rates(counts),
        )

    # -- what the user missed ------------------------------------------------------------------

    async def missed(self, caller: Caller, user_id: str, query: MissedQuery) -> MissedOut:
        """The user's notifications dropped since ``since`` because no device of theirs could
        take them, in the apps the caller may see (or the one asked for), by tier and category.

        A notification counts from the moment it was dropped (a deferred one may be dropped at
        its release, later than it was sent). Finished notifications are deleted after
        ``retention.notifications_days``, so nothing older than that is counted.
        """
        context = self._context
        since = query.since if query.since is not None else context.clock() - DEFAULT_WINDOW
        statement = (
            sa.select(col(Notification.tier), col(Notification.category), sa.func.count())
            .where(
                col(Notification.user_id) == user_id,
                col(Notification.status) == NotificationStatus.DROPPED,
                col(Notification.reason) == DropReason.NO_ACTIVE_DEVICES,
                col(Notification.updated_at) >= since,
            )
            .group_by(col(Notification.tier), col(Notification.category))
        )
        if query.app is not None:
            app = resolve_app(context.settings, query.app, caller)
            statement = statement.where(col(Notification.app) == app)
        elif caller.apps is not None:
            statement = statement.where(col(Notification.app).in_(sorted(caller.apps)))
        async with context.sessions() as session:
            rows = (await session.execute(statement)).all()
        by_tier = dict.fromkeys(Tier, 0)
        by_category: dict[str, int] = {}
        for tier, category, count in rows:
            by_tier[Tier(tier)] += count
            if category is not None:
                by_category[category] = by_category.get(category, 0) + count
        return MissedOut(
            since=since,
            total=sum(by_tier.values()),
            by_tier=by_tier,
            by_category=dict(sorted(by_category.items())),
        )


# -- pieces other services use -----------------------------------------------------------------


async def record_registration_change(
    session: AsyncSession,
    device: Device,
    previous_permission: str | None,
    *,
    now: datetime,
    reported_by: str,
) -> PermissionEventOut | None:
    """Store the permission a registration gave ``device`` as an ``os_prompt_result`` of its
    user (source ``registration``); None when there is nothing to store.

    Only answers the OS prompt can give are stored (``granted``, ``denied``, ``provisional``):
    ``unknown`` is the absence of one. The funnel counts it only for ``re_enabled``: the app did
    not report a prompt, the user changed the Settings or the device reported what it had.
    """
    if device.permission not in _ANSWERS:
        return None
    result = OsPromptResult(device.permission)
    values = {
        "user_id": device.user_id,
        "app": device.app,
        "platform": device.platform,
        "event": PermissionEventKind.OS_PROMPT_RESULT.value,
        "result": result.value,
        "device_id": device.id,
        "event_id": None,
        "source": PermissionEventSource.REGISTRATION.value,
        "reported_by": reported_by,
        "previous_permission": previous_permission,
        "funnel_step": None,
        "re_enabled": _re_enables(previous_permission, result),
        "at": now,
        "recorded_at": now,
    }
    return await _insert_event(session, values)


def count_permission_event(metrics: Metrics, event: PermissionEventOut) -> None:
    """Count a stored event in ``pushgate_permission_events_total``."""
    metrics.permission_events.labels(
        event.app,
        event.platform.value,
        event.event.value,
        event.result.value if event.result is not None else "",
    ).inc()


async def forget_permission_history(
    session: AsyncSession, user_id: str, *, apps: frozenset[str] | None
) -> int:
    """Delete the user's permission events and funnel rows, of ``apps`` only when given (None:
    every app); returns how many events were deleted."""
    events = sa.delete(PermissionEventRecord).where(col(PermissionEventRecord.user_id) == user_id)
    days = sa.delete(PermissionFunnelDay).where(col(PermissionFunnelDay.user_id) == user_id)
    last_days = sa.delete(PermissionFunnelUser).where(col(PermissionFunnelUser.user_id) == user_id)
    if apps is not None:
        events = events.where(col(PermissionEventRecord.app).in_(sorted(apps)))
        days = days.where(col(PermissionFunnelDay.app).in_(sorted(apps)))
        last_days = last_days.where(col(PermissionFunnelUser.app).in_(sorted(apps)))
    deleted = await session.execute(events)
    await session.execute(days)
    await session.execute(last_days)
    return int(deleted.rowcount or 0)  # type: ignore[attr-defined]


def funnel_rates(counts: FunnelCounts) -> FunnelRates:
    """The funnel's three ratios; None where the divisor is 0."""

    def ratio(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return FunnelRates(
        soft_ask_acceptance=ratio(counts.soft_ask_accepted, counts.soft_ask_shown),
        os_grant_after_soft_ask=ratio(counts.os_granted, counts.soft_ask_accepted),
        opt_in=ratio(counts.os_granted, counts.soft_ask_shown),
    )


@dataclass(frozen=True, slots=True)
class FunnelWindow:
    """``[since, until)`` split into the whole UTC days the rollup answers for, ``[first_day,
    end_day)``, and the instants before and after them that only the events can answer for.
    ``None`` for ``until`` or ``end_day``: no end."""

    whole_days: tuple[date, date | None] | None
    partial: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def of(cls, since: datetime, until: datetime | None) -> FunnelWindow:
        since = since.astimezone(UTC)
        first_day = since.date() if since.time() == time() else since.date() + timedelta(days=1)
        first_start = datetime.combine(first_day, time(), tzinfo=UTC)
        if until is None:
            head = ((since, first_start),) if since < first_start else ()
            return cls(whole_days=(first_day, None), partial=head)
        until = until.astimezone(UTC)
        end_day = until.date()
        end_start = datetime.combine(end_day, time(), tzinfo=UTC)
        if first_day >= end_day:  # no whole day inside: the events answer for all of it
            return cls(whole_days=None, partial=((since, until),))
        partial = [(since, first_start), (end_start, until)]
        return cls(
            whole_days=(first_day, end_day),
            partial=tuple((start, end) for start, end in partial if start < end),
        )


async def count_funnel_users(
    session: AsyncSession,
    *,
    app: str,
    platform: str | None,
    since: datetime,
    until: datetime | None,
) -> dict[FunnelStep, int]:
    """Distinct users of ``app`` (and ``platform``, when given) per funnel step in ``[since,
    until)`` (no end when ``until`` is None), in one query."""
    window = FunnelWindow.of(since, until)
    if window.whole_days is not None and window.whole_days[1] is None:
        statement = _open_window_counts(app, platform, window.whole_days[0], window.partial)
    else:
        statement = _window_counts(app, platform, window)
    if session.get_bind().dialect.name == "postgresql":
        # The planner prices the count over a long window high enough to compile it first,
        # which took longer (about 100 ms) than the query itself at 10M events.
        await session.execute(sa.text("SET LOCAL jit = off"))
    rows = await session.execute(statement)
    return {FunnelStep(step): int(count) for step, count in rows}


def _window_counts(app: str, platform: str | None, window: FunnelWindow) -> sa.Select[Any, Any]:
    """Distinct (step, user) pairs of the whole days (from the daily rollup) and of the partial
    days (from the events), counted per step."""
    parts: list[sa.Select[Any, Any]] = []
    if window.whole_days is not None:
        first_day, end_day = window.whole_days
        days: sa.Select[Any, Any] = sa.select(
            col(PermissionFunnelDay.step).label("step"),
            col(PermissionFunnelDay.user_id).label("user_id"),
        ).where(col(PermissionFunnelDay.app) == app, col(PermissionFunnelDay.day) >= first_day)
        if end_day is not None:
            days = days.where(col(PermissionFunnelDay.day) < end_day)
        if platform is not None:
            days = days.where(col(PermissionFunnelDay.platform) == platform)
        parts.append(days)
    parts.extend(_edge_steps(app, platform, window.partial))
    reached = sa.union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    # DISTINCT then COUNT(*): a hash of (step, user) instead of sorting per step
    distinct = sa.select(reached.c.step, reached.c.user_id).distinct().subquery()
    return sa.select(distinct.c.step, sa.func.count()).group_by(distinct.c.step)


def _open_window_counts(
    app: str,
    platform: str | None,
    first_day: date,
    head: tuple[tuple[datetime, datetime], ...],
) -> sa.Select[Any, Any]:
    """Users per step since ``first_day`` (their last day with it is that day or later), plus
    the users of the partial day before it who did not come back since, counted per step."""
    users = PermissionFunnelUser.__table__  # type: ignore[attr-defined]
    scope = platform if platform is not None else ALL_PLATFORMS
    since_first_day = (
        sa.select(users.c.step.label("step"), sa.func.count().label("users"))
        .where(users.c.app == app, users.c.scope == scope, users.c.last_day >= first_day)
        .group_by(users.c.step)
    )
    if not head:
        return since_first_day
    edges = sa.union_all(*_edge_steps(app, platform, head)).subquery("head")
    only_before = (
        sa.select(
            edges.c.step.label("step"), sa.func.count(edges.c.user_id.distinct()).label("users")
        )
        .select_from(
            edges.outerjoin(
                users,
                sa.and_(
                    users.c.user_id == edges.c.user_id,
                    users.c.app == app,
                    users.c.scope == scope,
                    users.c.step == edges.c.step,
                ),
            )
        )
        .where(sa.or_(users.c.last_day.is_(None), users.c.last_day < first_day))
        .group_by(edges.c.step)
    )
    both = sa.union_all(since_first_day, only_before).subquery()
    return sa.select(both.c.step, sa.func.sum(both.c.users)).group_by(both.c.step)


def _edge_steps(
    app: str, platform: str | None, ranges: tuple[tuple[datetime, datetime], ...]
) -> list[sa.Select[Any, Any]]:
    """(step, user) of the events in ``ranges``: the step each carries, and ``re_enabled``."""
    if not ranges:
        return []
    # the events of the edges are read once, for both the step they carry and re_enabled
    events = sa.select(
        col(PermissionEventRecord.funnel_step),
        col(PermissionEventRecord.re_enabled),
        col(PermissionEventRecord.user_id),
    ).where(
        col(PermissionEventRecord.app) == app,
        sa.or_(
            *(
                sa.and_(col(PermissionEventRecord.at) >= start, col(PermissionEventRecord.at) < end)
                for start, end in ranges
            )
        ),
    )
    if platform is not None:
        events = events.where(col(PermissionEventRecord.platform) == platform)
    edges = events.cte("edges").prefix_with("MATERIALIZED")
    return [
        sa.select(edges.c.funnel_step.label("step"), edges.c.user_id.label("user_id")).where(
            edges.c.funnel_step.is_not(None)
        ),
        sa.select(
            sa.literal(FunnelStep.RE_ENABLED.value).label("step"),
            edges.c.user_id.label("user_id"),
        ).where(edges.c.re_enabled),
    ]


# -- storage -----------------------------------------------------------------------------------


def _re_enables(previous_permission: str | None, result: OsPromptResult | None) -> bool:
    return previous_permission == Permission.DENIED and result == OsPromptResult.GRANTED


def _insert(session: AsyncSession, table: Any) -> Any:
    """INSERT for the session's dialect (both spell ON CONFLICT the same way)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _insert_event(session: AsyncSession, values: dict[str, Any]) -> PermissionEventOut:
    """Store one event and its funnel rows; raises :class:`_AlreadyRecorded` when a concurrent
    request stored its ``event_id`` first."""
    table = PermissionEventRecord.__table__  # type: ignore[attr-defined]
    statement = _insert(session, table).values(values)
    if values["event_id"] is not None:
        # ON CONFLICT instead of catching IntegrityError: a failed INSERT would abort a
        # PostgreSQL transaction.
        statement = statement.on_conflict_do_nothing(index_elements=["user_id", "app", "event_id"])
    inserted = await session.execute(statement.returning(table.c.id))
    event_id = inserted.scalar_one_or_none()
    if event_id is None:
        raise _AlreadyRecorded
    steps = [values["funnel_step"]] if values["funnel_step"] is not None else []
    if values["re_enabled"]:
        steps.append(FunnelStep.RE_ENABLED.value)
    if steps:
        day = values["at"].astimezone(UTC).date()
        rows = [
            {
                "app": values["app"],
                "day": day,
                "platform": values["platform"],
                "step": step,
                "user_id": values["user_id"],
            }
            for step in steps
        ]
        days = PermissionFunnelDay.__table__  # type: ignore[attr-defined]
        await session.execute(_insert(session, days).values(rows).on_conflict_do_nothing())
        await _advance_last_days(session, values, steps, day)
    return PermissionEventOut(id=event_id, **values)


async def _advance_last_days(
    session: AsyncSession, values: dict[str, Any], steps: list[str], day: date
) -> None:
    """Move the user's last day of each step to ``day`` (on the platform and on any), unless a
    later one is already there: events may arrive out of order."""
    users = PermissionFunnelUser.__table__  # type: ignore[attr-defined]
    rows = [
        {
            "user_id": values["user_id"],
            "app": values["app"],
            "scope": scope,
            "step": step,
            "last_day": day,
        }
        for step in steps
        for scope in (values["platform"], ALL_PLATFORMS)
    ]
    insert = _insert(session, users).values(rows)
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["user_id", "app", "scope", "step"],
            set_={"last_day": insert.excluded.last_day},
            where=users.c.last_day < insert.excluded.last_day,
        )
    )


async def _find_event_id(
    session: AsyncSession, user_id: str, app: str, event_id: str
) -> PermissionEventOut | None:
    found = await session.execute(
        select(PermissionEventRecord).where(
            col(PermissionEventRecord.user_id) == user_id,
            col(PermissionEventRecord.app) == app,
            col(PermissionEventRecord.event_id) == event_id,
        )
    )
    record = found.scalar_one_or_none()
    return PermissionEventOut.model_validate(record) if record is not None else None


async def _device_of_user(session: AsyncSession, device_id: str, user_id: str, app: str) -> Device:
    """The user's device of ``app`` with that id, locked; 422 naming ``device_id`` otherwise.

    A device of another user or another app answers exactly like one that does not exist, so a
    key limited to some apps learns nothing about the others.
    """
    device = await session.get(Device, device_id, with_for_update=True)
    if device is None or device.user_id != user_id or device.app != app:
        message = f"user {user_id!r} has no device {device_id!r} in app {app!r}"
        raise ValidationFailed(message, errors=[FieldError("device_id", message)])
    return device
