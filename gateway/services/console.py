"""What the operator console shows, read with bounded queries, and its sign-in sessions.

Every read takes the signed-in :class:`~gateway.services.access.Caller` and applies its app
limits in the query itself, like every other service. Each page's cost follows its window, not
the history:

- the deferred queue reads the next 24 hours of ``(status, deliver_at)``, the release job's
  own index;
- deliveries read the last 24 hours of ``deliveries.updated_at`` from an index that carries
  every column counted (each delivery keeps its notification's app for this), and count
  latencies into fixed buckets in the same pass, so no row leaves the database;
- tokens count devices from the ``(app, platform, status)`` index and invalidations from the
  ``(kind, at)`` index of the audit trail over 14 days.

The circuit breakers and the mass-invalidation guard live in the memory of the process that
delivers; the console's HTTP layer reads them from the runtime, not from here.

Sessions: the browser holds a random token; only its sha256 is stored, with the name and a
fingerprint of the API key it was opened with, and its expiry.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from gateway.db import transaction
from gateway.errors import FieldError, ValidationFailed
from gateway.models import ConsoleSession, Delivery, DeliveryStatus, Notification
from gateway.models import NotificationStatus as Status
from gateway.services.access import Caller, resolve_app
from gateway.services.context import ServiceContext
from policies import DeferReason, Tier
from tokens.models import Device, DeviceStatus, TokenEvent, TokenEventKind

SESSION_LIFETIME = timedelta(hours=8)
"""How long a console session lasts after sign-in: one working day, then sign in again."""
QUEUE_HOURS = 24
DELIVERY_WINDOW = timedelta(hours=24)
INVALIDATION_DAYS = 14
LATENCY_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Upper bounds (seconds) of the buckets delivery latencies are counted in; a percentile is
reported as the bound of the bucket it falls in."""
PERCENTILES = (50, 90, 99)
DEFER_REASONS = (DeferReason.QUIET_HOURS.value, DeferReason.SCHEDULED.value)
PROVIDERS = {"ios": "APNs", "android": "FCM"}


# -- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """The deferred queue's filters: one app (None: every app the caller may see), one tier."""

    app: str | None = None
    tier: Tier | None = None


@dataclass(frozen=True)
class DeferredHour:
    """Deferred notifications due in one hour (UTC), by reason."""

    start: datetime
    by_reason: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())


@dataclass(frozen=True)
class Wave:
    """The biggest hour ahead, and the zone most of it is released for."""

    start: datetime
    total: int
    zone: str
    zone_count: int
    local_time: datetime
    """The first release of that zone in that hour, on the zone's clock."""


@dataclass(frozen=True)
class DeferredQueue:
    now: datetime
    hours: list[DeferredHour]
    later: int
    """Deferred beyond the 24 hours shown."""
    wave: Wave | None

    @property
    def total(self) -> int:
        return sum(hour.total for hour in self.hours)


@dataclass(frozen=True)
class LatencySummary:
    """Seconds from a delivery's creation (its notification queued) to the provider's
    acceptance, as bucket bounds: a percentile ``p`` is at most ``bounds[p]`` seconds (None:
    above the last bound)."""

    count: int
    percentiles: dict[int, float | None]


@dataclass(frozen=True)
class DeliveryRow:
    provider: str
    platform: str
    app: str
    sent: int = 0
    failed: int = 0
    invalid_token: int = 0
    pending: int = 0
    retried: int = 0
    latency: LatencySummary = field(default_factory=lambda: LatencySummary(0, {}))

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.invalid_token + self.pending


@dataclass(frozen=True)
class DeliveryTotals:
    since: datetime
    rows: list[DeliveryRow]


@dataclass(frozen=True)
class TokenRow:
    app: str
    platform: str
    active: int = 0
    stale: int = 0
    invalid: int = 0


@dataclass(frozen=True)
class TokenHealth:
    rows: list[TokenRow]
    days: list[date]
    invalidations: dict[date, dict[str, int]]
    """Per UTC day, invalidations by reason."""
    reasons: list[str]


@dataclass(frozen=True)
class SessionKey:
    """What a console session remembers of the API key it was opened with."""

    key_name: str
    key_fingerprint: str
    expires_at: datetime


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


# -- the service -------------------------------------------------------------------------------


class ConsoleService:
    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    # -- sessions ------------------------------------------------------------------------------

    async def open_session(self, key_name: str, fingerprint: str) -> tuple[str, datetime]:
        """A new session for the key; returns the token for the browser and its expiry.
        Expired sessions are deleted on the way."""
        now = self._context.clock()
        token = secrets.token_urlsafe(32)
        expires_at = now + SESSION_LIFETIME
        async with transaction(self._context.sessions) as session:
            await session.execute(
                sa.delete(ConsoleSession).where(col(ConsoleSession.expires_at) <= now)
            )
            session.add(
                ConsoleSession(
                    token_sha256=_token_digest(token),
                    key_name=key_name,
                    key_fingerprint=fingerprint,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
        return token, expires_at

    async def find_session(self, token: str) -> SessionKey | None:
        """The key of an unexpired session, or None."""
        if not token or len(token) > 256:
            return None
        now = self._context.clock()
        async with self._context.sessions() as session:
            row = await session.get(ConsoleSession, _token_digest(token))
        if row is None or row.expires_at <= now:
            return None
        return SessionKey(row.key_name, row.key_fingerprint, row.expires_at)

    async def end_session(self, token: str) -> None:
        """Sign out: the session is deleted (a token that names none is ignored)."""
        if not token or len(token) > 256:
            return
        async with transaction(self._context.sessions) as session:
            await session.execute(
                sa.delete(ConsoleSession).where(
                    col(ConsoleSession.token_sha256) == _token_digest(token)
                )
            )

    # -- filters -------------------------------------------------------------------------------

    def visible_apps(self, caller: Caller) -> list[str]:
        """The configured apps the caller may see, in configuration order."""
        return [app.id for app in self._context.settings.apps if caller.may_use_app(app.id)]

    def _apps_condition(
        self, caller: Caller, app: str | None, column: Any
    ) -> ColumnElement[bool] | None:
        """The app limit of a query: the one app asked for (checked), or the caller's apps."""
        if app is not None:
            return column == resolve_app(self._context.settings, app, caller)  # type: ignore[no-any-return]
        if caller.apps is not None:
            return column.in_(sorted(caller.apps))  # type: ignore[no-any-return]
        return None

    # -- the deferred queue --------------------------------------------------------------------

    async def deferred_queue(self, caller: Caller, query: QueueFilter) -> DeferredQueue:
        """Deferred notifications per hour of the next 24 (the first is the current hour, so
        what is due and about to be released shows there), by reason, and the biggest wave."""
        now = self._context.clock().astimezone(UTC)
        first = now.replace(minute=0, second=0, microsecond=0)
        end = first + timedelta(hours=QUEUE_HOURS)
        conditions: list[ColumnElement[bool]] = [
            # a literal, not a parameter: the planner can then read the partial index of
            # deferred rows (ix_notifications_deferred_console) only when it sees the value
            col(Notification.status) == sa.literal_column(f"'{Status.DEFERRED.value}'"),
        ]
        limit = self._apps_condition(caller, query.app, col(Notification.app))
        if limit is not None:
            conditions.append(limit)
        if query.tier is not None:
            conditions.append(col(Notification.tier) == query.tier.value)
        deliver_at = col(Notification.deliver_at)
        hour = self._truncated(deliver_at, "hour")
        async with self._context.sessions() as session:
            rows = await session.execute(
                sa.select(hour, col(Notification.reason), sa.func.count())
                .where(*conditions, deliver_at < end)
                .group_by(hour, col(Notification.reason))
            )
            counts: dict[datetime, dict[str, int]] = defaultdict(dict)
            for bucket, reason, count in rows:
                start = max(_parse_bucket(bucket), first)  # overdue rows count in this hour
                by_reason = counts[start]
                by_reason[reason or "other"] = by_reason.get(reason or "other", 0) + count
            later = (
                await session.execute(
                    sa.select(sa.func.count()).where(*conditions, deliver_at >= end)
                )
            ).scalar_one()
            hours = [
                DeferredHour(start, _with_reasons(counts.get(start, {})))
                for start in (first + timedelta(hours=i) for i in range(QUEUE_HOURS))
            ]
            wave = None
            biggest = max(hours, key=lambda h: (h.total, -h.start.timestamp()))
            if biggest.total:
                wave = await self._wave(session, conditions, biggest, first)
        return DeferredQueue(now=now, hours=hours, later=later, wave=wave)

    async def _wave(
        self,
        session: Any,
        conditions: list[ColumnElement[bool]],
        hour: DeferredHour,
        first: datetime,
    ) -> Wave | None:
        deliver_at = col(Notification.deliver_at)
        zone = col(Notification.decision)["zone"].as_string()
        # the current hour also holds the overdue rows
        lower = deliver_at >= hour.start if hour.start != first else sa.true()
        top = (
            await session.execute(
                sa.select(zone, sa.func.count(), sa.func.min(deliver_at))
                .where(*conditions, lower, deliver_at < hour.start + timedelta(hours=1))
                .group_by(zone)
                .order_by(sa.func.count().desc(), zone)
                .limit(1)
            )
        ).first()
        if top is None:
            return None
        zone_name, zone_count, earliest = top
        zone_name = zone_name or self._context.policy.default_timezone
        local = _in_zone(_as_utc(earliest), zone_name)
        return Wave(hour.start, hour.total, zone_name, zone_count, local)

    # -- deliveries ----------------------------------------------------------------------------

    async def deliveries(self, caller: Caller, app: str | None = None) -> DeliveryTotals:
        """Deliveries that changed in the last 24 hours per provider and app: how they ended,
        how many needed more than one attempt, and latency percentiles of the sent ones."""
        now = self._context.clock()
        since = now - DELIVERY_WINDOW
        recent = sa.select(
            col(Delivery.platform).label("platform"),
            col(Delivery.app).label("app"),
            col(Delivery.status).label("status"),
            col(Delivery.attempts).label("attempts"),
            self._seconds_between(col(Delivery.created_at), col(Delivery.updated_at)).label(
                "latency"
            ),
        ).where(col(Delivery.updated_at) >= since)
        limit = self._apps_condition(caller, app, col(Delivery.app))
        if limit is not None:
            recent = recent.where(limit)
        # materialized, so each row's latency is worked out once, not once per bucket
        window = recent.cte("recent_deliveries").prefix_with("MATERIALIZED")
        status, sent = window.c.status, window.c.status == DeliveryStatus.SENT

        def count_where(condition: ColumnElement[bool]) -> Any:
            return sa.func.sum(sa.case((condition, 1), else_=0))

        statement = (
            sa.select(
                window.c.platform,
                window.c.app,
                count_where(sent),
                count_where(status == DeliveryStatus.FAILED),
                count_where(status == DeliveryStatus.INVALID_TOKEN),
                count_where(status == DeliveryStatus.PENDING),
                count_where(window.c.attempts > 1),
                *(count_where(sa.and_(sent, window.c.latency <= b)) for b in LATENCY_BOUNDS),
            )
            .group_by(window.c.platform, window.c.app)
            .order_by(window.c.platform, window.c.app)
        )
        async with self._context.sessions() as session:
            result = list(await session.execute(statement))
        rows = []
        for platform, row_app, n_sent, failed, invalid, pending, retried, *within in result:
            rows.append(
                DeliveryRow(
                    provider=PROVIDERS.get(platform, platform),
                    platform=platform,
                    app=row_app,
                    sent=int(n_sent or 0),
                    failed=int(failed or 0),
                    invalid_token=int(invalid or 0),
                    pending=int(pending or 0),
                    retried=int(retried or 0),
                    latency=_latency(int(n_sent or 0), [int(n or 0) for n in within]),
                )
            )
        return DeliveryTotals(since=since, rows=rows)

    # -- tokens --------------------------------------------------------------------------------

    async def token_health(self, caller: Caller, app: str | None = None) -> TokenHealth:
        """Devices per app and platform by status, and invalidations per UTC day of the last
        14 by reason."""
        now = self._context.clock().astimezone(UTC)
        first_day = now.date() - timedelta(days=INVALIDATION_DAYS - 1)
        since = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
        device_limit = self._apps_condition(caller, app, col(Device.app))
        counts = (
            sa.select(col(Device.app), col(Device.platform), col(Device.status), sa.func.count())
            .group_by(col(Device.app), col(Device.platform), col(Device.status))
            .order_by(col(Device.app), col(Device.platform))
        )
        if device_limit is not None:
            counts = counts.where(device_limit)
        day = self._truncated(col(TokenEvent.at), "day")
        invalidated = (
            sa.select(day, col(TokenEvent.reason), sa.func.count())
            .where(
                col(TokenEvent.kind) == TokenEventKind.INVALIDATED,
                col(TokenEvent.at) >= since,
            )
            .group_by(day, col(TokenEvent.reason))
        )
        event_limit = self._apps_condition(caller, app, col(TokenEvent.app))
        if event_limit is not None:
            invalidated = invalidated.where(event_limit)
        async with self._context.sessions() as session:
            by_key: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
            for row_app, platform, status, count in await session.execute(counts):
                by_key[(row_app, platform)][status] = count
            per_day: dict[date, dict[str, int]] = defaultdict(dict)
            reasons: set[str] = set()
            for bucket, reason, count in await session.execute(invalidated):
                name = reason or "unknown"
                reasons.add(name)
                per_day[_parse_bucket(bucket).date()][name] = count
        rows = [
            TokenRow(
                app=key[0],
                platform=key[1],
                active=statuses.get(DeviceStatus.ACTIVE, 0),
                stale=statuses.get(DeviceStatus.STALE, 0),
                invalid=statuses.get(DeviceStatus.INVALID, 0),
            )
            for key, statuses in sorted(by_key.items())
        ]
        days = [first_day + timedelta(days=i) for i in range(INVALIDATION_DAYS)]
        return TokenHealth(
            rows=rows, days=days, invalidations=dict(per_day), reasons=sorted(reasons)
        )

    # -- dialect helpers -----------------------------------------------------------------------

    @property
    def _is_sqlite(self) -> bool:
        return self._context.settings.database.is_sqlite

    def _truncated(self, column: Any, unit: str) -> Any:
        """``column`` (a UTC timestamp) cut to the hour or day, as text
        ``YYYY-MM-DD HH:00:00`` that both databases group and sort alike."""
        if self._is_sqlite:
            pattern = "%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00"
            return sa.func.strftime(pattern, column)
        pattern = "YYYY-MM-DD HH24:00:00" if unit == "hour" else "YYYY-MM-DD 00:00:00"
        return sa.func.to_char(sa.func.timezone("UTC", column), pattern)

    def _seconds_between(self, start: Any, end: Any) -> Any:
        if self._is_sqlite:
            return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
        return sa.extract("epoch", end - start)


def _with_reasons(counts: dict[str, int]) -> dict[str, int]:
    """Every defer reason present (zero when none), others after them."""
    return {reason: counts.get(reason, 0) for reason in DEFER_REASONS} | {
        reason: count for reason, count in counts.items() if reason not in DEFER_REASONS
    }


def _parse_bucket(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _as_utc(instant: datetime | str) -> datetime:
    if isinstance(instant, str):  # SQLite's min() of a timestamp column is its text
        instant = datetime.fromisoformat(instant)
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def _in_zone(instant: datetime, zone: str) -> datetime:
    try:
        return instant.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return instant


def _latency(sent: int, within: list[int]) -> LatencySummary:
    """Percentiles from cumulative bucket counts (``within[i]``: sent within bound i)."""
    percentiles: dict[int, float | None] = {}
    if sent:
        for p in PERCENTILES:
            needed = sent * p / 100
            percentiles[p] = next(
                (bound for bound, n in zip(LATENCY_BOUNDS, within, strict=True) if n >= needed),
                None,
            )
    return LatencySummary(sent, percentiles)


def parse_tier(value: str | None) -> Tier | None:
    """A tier filter from a form: empty means every tier; 422 for a tier that does not exist."""
    if not value:
        return None
    try:
        return Tier(value)
    except ValueError:
        known = ", ".join(tier.value for tier in Tier)
        message = f"tier {value[:32]!r} does not exist (tiers: {known})"
        raise ValidationFailed(message, errors=[FieldError("tier", message)]) from None
