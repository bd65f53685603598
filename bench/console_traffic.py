"""Known traffic for the operator console: what its tests check the pages against, and what the
README's screenshot shows (``python -m bench.console_screenshot``).

:func:`seed_known_traffic` writes a small, fixed picture relative to ``now`` (deferred
notifications in two waves and two apps, a day of deliveries, devices in every token state,
invalidations over three days, a permission funnel and one user with history) and returns the
figures each page must show, as :class:`KnownTraffic`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.models import Delivery, Notification
from gateway.schemas import PermissionEventReport, PreferencesUpdate
from gateway.services import Services
from gateway.services.access import Caller
from tokens.models import Device, TokenEvent

LOOKUP_USER = "user-lookup-1"


@dataclass(frozen=True)
class KnownTraffic:
    """What was seeded, as the pages should count it."""

    deferred_total: int = 66  # in the next 24 hours, every app
    deferred_later: int = 7
    deferred_demo: int = 46
    deferred_other: int = 20
    deferred_promotional: int = 10
    wave_hour: str = "20"  # UTC hour of the biggest wave (every app): 41 notifications
    wave_total: int = 41
    wave_zone: str = "Pacific/Auckland"
    wave_local: str = "08:10"
    other_wave_zone: str = "America/Los_Angeles"
    other_wave_local: str = "08:05"


def _decision(
    *,
    zone: str,
    at: datetime,
    tier: str,
    rule: str,
    status: str,
    reason: str | None,
    deliver_at: Any,
) -> dict[str, Any]:
    quiet = rule != "scheduled" and tier != "transactional"
    return {
        "zone": zone,
        "zone_source": "preferences",
        "local_time": at.astimezone(ZoneInfo(zone)).isoformat(),
        "quiet_hours": {"start": "22:00", "end": "08:00"} if quiet else None,
        "rule": rule,
        "status": status,
        "reason": reason,
        "deliver_at": deliver_at.isoformat() if deliver_at is not None else None,
    }


def notification_row(
    now: datetime,
    *,
    app: str,
    tier: str,
    status: str,
    reason: str | None = None,
    deliver_at: datetime | None = None,
    zone: str = "UTC",
    user_id: str | None = None,
    created_at: datetime | None = None,
    rule: str | None = None,
) -> dict[str, Any]:
    """One notification row as the gateway stores it, with its decision."""
    created = created_at or now
    rule = rule or ("scheduled" if reason == "scheduled" else "quiet_hours" if reason else "send")
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id or f"u-{uuid.uuid4().hex[:10]}",
        "app": app,
        "tier": tier,
        "category": None,
        "classified_by": "tier",
        "status": status,
        "reason": reason,
        "title": "t",
        "body": None,
        "data": None,
        "collapse_key": None,
        "badge": None,
        "sound": None,
        "thread_id": None,
        "sender": "seed",
        "request_id": None,
        "deliver_at": deliver_at,
        "expires_at": created + timedelta(days=7),
        "counted_at": None,
        "created_at": created,
        "updated_at": created,
        "send_at": deliver_at if reason == "scheduled" else None,
        "send_at_local": None,
        "scheduled_wall_time": None,
        "scheduled_zone": None,
        "decision": _decision(
            zone=zone,
            at=created,
            tier=tier,
            rule=rule,
            status=status,
            reason=reason,
            deliver_at=deliver_at,
        ),
    }


def delivery_row(
    notification_id: str,
    *,
    app: str,
    platform: str,
    status: str,
    created_at: datetime,
    latency_seconds: float,
    attempts: int = 1,
) -> dict[str, Any]:
    finished = created_at + timedelta(seconds=latency_seconds)
    return {
        "id": str(uuid.uuid4()),
        "notification_id": notification_id,
        "device_id": str(uuid.uuid4()),
        "platform": platform,
        "app": app,
        "status": status,
        "attempts": attempts,
        "provider_id": None,
        "error": None if status == "sent" else "seeded",
        "end_reason": None,
        "next_attempt_at": created_at,
        "lease_owner": None,
        "lease_until": None,
        "created_at": created_at,
        "updated_at": finished,
    }


def device_row(
    now: datetime,
    *,
    app: str,
    platform: str,
    status: str,
    user_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    token = uuid.uuid4().hex * 2
    return {
        "id": str(uuid.uuid4()),
        "user_id": user_id or f"u-{uuid.uuid4().hex[:10]}",
        "app": app,
        "platform": platform,
        "token": token if platform == "ios" else f"fcm:{token}",
        "environment": "production",
        "timezone": None,
        "locale": None,
        "permission": "granted",
        "status": status,
        "invalid_reason": reason,
        "invalidated_at": now if status == "invalid" else None,
        "invalidated_by": "seed" if status == "invalid" else None,
        "created_at": now - timedelta(days=30),
        "last_seen_at": now - timedelta(days=1),
        "updated_at": now,
    }


def invalidation_row(at: datetime, *, app: str, platform: str, reason: str) -> dict[str, Any]:
    return {
        "device_id": str(uuid.uuid4()),
        "app": app,
        "platform": platform,
        "token_suffix": "abcdef",
        "kind": "invalidated",
        "reason": reason,
        "actor": "seed",
        "at": at,
    }


def _deferred(now: datetime) -> list[dict[str, Any]]:
    rows = []
    wave = now.replace(hour=20, minute=10, second=0, microsecond=0)  # 08:10 in Auckland
    rows += [
        notification_row(
            now,
            app="demo",
            tier="behavioral",
            status="deferred",
            reason="quiet_hours",
            deliver_at=wave + timedelta(seconds=i),
            zone="Pacific/Auckland",
        )
        for i in range(30)
    ]
    rows += [
        notification_row(
            now,
            app="demo",
            tier="promotional",
            status="deferred",
            reason="quiet_hours",
            deliver_at=wave + timedelta(minutes=5, seconds=i),
            zone="Asia/Tokyo" if i < 4 else "Pacific/Auckland",
        )
        for i in range(10)
    ]
    rows += [
        notification_row(
            now,
            app="demo",
            tier="transactional",
            status="deferred",
            reason="scheduled",
            deliver_at=now.replace(hour=15, minute=0) + timedelta(minutes=i),
            zone="Europe/Berlin",
        )
        for i in range(5)
    ]
    rows += [
        notification_row(
            now,
            app="other",
            tier="behavioral",
            status="deferred",
            reason="quiet_hours",
            deliver_at=now.replace(hour=15, minute=5) + timedelta(seconds=i),
            zone="America/Los_Angeles",
        )
        for i in range(20)
    ]
    rows += [
        notification_row(
            now,
            app="demo",
            tier="transactional",
            status="deferred",
            reason="scheduled",
            deliver_at=now + timedelta(days=3, minutes=i),
            zone="Europe/Berlin",
        )
        for i in range(7)
    ]
    return rows


def _deliveries(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    notifications: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []

    def add(
        app: str,
        platform: str,
        status: str,
        count: int,
        latency: float,
        *,
        attempts: int = 1,
        ago: timedelta = timedelta(hours=2),
    ) -> None:
        for _ in range(count):
            created = now - ago
            notification = notification_row(
                now, app=app, tier="transactional", status="sent", created_at=created
            )
            notifications.append(notification)
            deliveries.append(
                delivery_row(
                    notification["id"],
                    app=app,
                    platform=platform,
                    status=status,
                    created_at=created,
                    latency_seconds=latency,
                    attempts=attempts,
                )
            )

    add("demo", "ios", "sent", 46, 0.2)
    add("demo", "ios", "sent", 4, 3.0, attempts=2)  # retried, then sent
    add("demo", "ios", "failed", 3, 30.0, attempts=5)
    add("demo", "ios", "invalid_token", 2, 0.1)
    add("demo", "android", "sent", 20, 1.5)
    add("demo", "android", "failed", 1, 2.0)
    add("other", "ios", "sent", 10, 0.05)
    add("demo", "ios", "sent", 100, 0.2, ago=timedelta(days=2))  # outside the 24 hours
    return notifications, deliveries


def _devices(now: datetime) -> list[dict[str, Any]]:
    rows = []
    for app, platform, status, count in (
        ("demo", "ios", "active", 12),
        ("demo", "ios", "stale", 3),
        ("demo", "ios", "invalid", 4),
        ("demo", "android", "active", 8),
        ("demo", "android", "invalid", 1),
        ("other", "ios", "active", 5),
    ):
        reason = "Unregistered" if status == "invalid" else None
        rows += [
            device_row(now, app=app, platform=platform, status=status, reason=reason)
            for _ in range(count)
        ]
    return rows


def _invalidations(now: datetime) -> list[dict[str, Any]]:
    rows = []
    for days_ago, app, platform, reason, count in (
        (0, "demo", "ios", "Unregistered", 3),
        (1, "demo", "ios", "BadDeviceToken", 1),
        (0, "demo", "android", "UNREGISTERED", 1),
        (2, "other", "ios", "Unregistered", 2),
    ):
        at = now - timedelta(days=days_ago, minutes=30)
        rows += [
            invalidation_row(at, app=app, platform=platform, reason=reason) for _ in range(count)
        ]
    return rows


def _lookup_user(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    devices = [
        device_row(now, app="demo", platform="ios", status="active", user_id=LOOKUP_USER),
        device_row(now, app="other", platform="android", status="active", user_id=LOOKUP_USER),
    ]
    release = now + timedelta(hours=8, minutes=15)  # in the biggest wave
    notifications = [
        notification_row(
            now,
            app="demo",
            tier="behavioral",
            status="deferred",
            reason="quiet_hours",
            deliver_at=release,
            zone="Pacific/Auckland",
            user_id=LOOKUP_USER,
            created_at=now - timedelta(minutes=1),
        ),
        notification_row(
            now,
            app="demo",
            tier="promotional",
            status="dropped",
            reason="not_opted_in",
            zone="Pacific/Auckland",
            user_id=LOOKUP_USER,
            created_at=now - timedelta(minutes=2),
            rule="consent",
        ),
        notification_row(
            now,
            app="other",
            tier="transactional",
            status="sent",
            zone="Pacific/Auckland",
            user_id=LOOKUP_USER,
            created_at=now - timedelta(minutes=3),
        ),
    ]
    return devices, notifications


async def seed_known_traffic(
    engine: AsyncEngine, services: Services, now: datetime
) -> KnownTraffic:
    """Write the known traffic (``now`` at 12:00 UTC, as the tests' clock is) and return its
    figures. Rows are inserted as the gateway stores them; the funnel and the preferences go
    through their services, so their rollups and history are the real ones."""
    if now.hour != 12:
        raise ValueError("the known traffic is laid out around 12:00 UTC")
    notifications = _deferred(now)
    sent, deliveries = _deliveries(now)
    user_devices, user_notifications = _lookup_user(now)
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(Notification.__table__),  # type: ignore[attr-defined]
            [*notifications, *sent, *user_notifications],
        )
        await connection.execute(sa.insert(Delivery.__table__), deliveries)  # type: ignore[attr-defined]
        await connection.execute(
            sa.insert(Device.__table__),  # type: ignore[attr-defined]
            [*_devices(now), *user_devices],
        )
        await connection.execute(sa.insert(TokenEvent.__table__), _invalidations(now))  # type: ignore[attr-defined]
    operator = Caller.operator("seed")
    await services.preferences.update(
        operator,
        LOOKUP_USER,
        PreferencesUpdate.model_validate({"timezone": "Pacific/Auckland", "promotional": False}),
        replace=False,
    )
    await _seed_funnel(services, operator, now)
    return KnownTraffic()


async def _seed_funnel(services: Services, operator: Caller, now: datetime) -> None:
    """demo on iOS: 4 users reach a value moment, 3 see the soft ask, 2 accept, 2 see the OS
    prompt, 1 grants. On Android: 2 users reach a value moment only."""
    at = now - timedelta(days=1)
    steps: list[tuple[str, str, list[dict[str, Any]]]] = []
    for i in range(4):
        events: list[dict[str, Any]] = [{"event": "value_moment"}]
        if i < 3:
            events.append({"event": "soft_ask_shown"})
        if i < 2:
            events += [{"event": "soft_ask_accepted"}, {"event": "os_prompt_shown"}]
        if i == 0:
            events.append({"event": "os_prompt_result", "result": "granted"})
        elif i == 1:
            events.append({"event": "os_prompt_result", "result": "denied"})
        steps.append((f"funnel-ios-{i}", "ios", events))
    steps += [(f"funnel-android-{i}", "android", [{"event": "value_moment"}]) for i in range(2)]
    for user_id, platform, events in steps:
        for n, event in enumerate(events):
            report = PermissionEventReport.model_validate(
                {"app": "demo", "platform": platform, "at": at + timedelta(minutes=n), **event}
            )
            await services.permission.record(operator, user_id, report)


WAVE_ZONES = (
    # (zone, UTC hour its quiet hours end at 08:00 local on 2026-06-15/16, notifications)
    ("Asia/Tokyo", 23, 380),
    ("Australia/Sydney", 22, 210),
    ("Asia/Kolkata", 2, 260),  # 08:00 IST is 02:30 UTC
    ("Europe/Berlin", 6, 520),
    ("Europe/London", 7, 340),
    ("America/Sao_Paulo", 11, 150),
    ("America/New_York", 12, 610),
    ("America/Chicago", 13, 240),
    ("America/Los_Angeles", 15, 430),
)


async def seed_waves(engine: AsyncEngine, now: datetime) -> None:
    """A day of quiet-hours waves as a global app sees them (each zone released from 08:00
    local over the release spread), and scheduled sends spread over the afternoon: the picture
    the README's screenshot shows."""
    rows = []
    for zone, hour, count in WAVE_ZONES:
        day = now if hour >= now.hour else now + timedelta(days=1)
        start = day.replace(hour=hour, minute=30 if zone == "Asia/Kolkata" else 0)
        spread = 30 * 60 / count
        rows += [
            notification_row(
                now,
                app="demo" if i % 3 else "other",
                tier="promotional" if i % 4 == 0 else "behavioral",
                status="deferred",
                reason="quiet_hours",
                deliver_at=start + timedelta(seconds=i * spread),
                zone=zone,
            )
            for i in range(count)
        ]
    for i in range(300):
        rows.append(
            notification_row(
                now,
                app="demo",
                tier="transactional" if i % 2 else "behavioral",
                status="deferred",
                reason="scheduled",
                deliver_at=now + timedelta(hours=2 + (i % 8), minutes=i % 60),
                zone="Europe/Berlin",
            )
        )
    async with engine.begin() as connection:
        await connection.execute(sa.insert(Notification.__table__), rows)  # type: ignore[attr-defined]
