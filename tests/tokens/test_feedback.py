"""Pruning from provider feedback: which reports invalidate a token, which never do."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from tokens import InvalidationGuard, TokenOutcome, apply_report, register_device
from tokens.models import Device, DeviceStatus, TokenEvent, TokenEventKind
from tokens.reports import DeliveryReport, Outcome

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Sessions = async_sessionmaker[AsyncSession]


async def new_device(sessions: Sessions, platform: str = "ios", now: datetime = T0) -> str:
    async with sessions() as session, session.begin():
        registration = await register_device(
            session,
            now=now,
            user_id="u1",
            app="shop",
            platform=platform,
            token="f" * 58 + "abcdef",
            actor="api:test",
        )
    return registration.device.id


async def apply(
    sessions: Sessions,
    device_id: str,
    report: DeliveryReport,
    now: datetime,
    guard: InvalidationGuard | None = None,
) -> tuple[TokenOutcome, Device]:
    async with sessions() as session, session.begin():
        outcome = await apply_report(
            session, device_id, report, now=now, actor="worker:1", guard=guard
        )
    async with sessions() as session:
        device = await session.get(Device, device_id)
    assert device is not None
    return outcome, device


def dead(reason: str, status: int = 400, since: datetime | None = None) -> DeliveryReport:
    return DeliveryReport(
        Outcome.TOKEN_DEAD,
        reason=reason,
        status=status,
        token_invalid_since=since,
        # as the providers mark them: tests/providers/test_*_classification.py
        misconfiguration=reason
        in {"BadDeviceToken", "DeviceTokenNotForTopic", "SENDER_ID_MISMATCH"},
    )


@pytest.mark.parametrize(
    ("platform", "report"),
    [
        ("ios", dead("Unregistered", 410, since=T0 + timedelta(minutes=1))),
        ("ios", dead("Unregistered", 410)),  # no timestamp: nothing to compare, invalidate
        ("ios", dead("ExpiredToken", 410)),
        ("ios", dead("BadDeviceToken")),
        ("ios", dead("DeviceTokenNotForTopic")),
        ("android", dead("UNREGISTERED", 404)),
        ("android", dead("SENDER_ID_MISMATCH", 403)),
        ("android", dead("INVALID_ARGUMENT")),
    ],
)
async def test_dead_token_reports_invalidate_with_reason_time_and_actor(
    sessions: Sessions, platform: str, report: DeliveryReport
) -> None:
    device_id = await new_device(sessions, platform)
    later = T0 + timedelta(hours=1)

    outcome, device = await apply(sessions, device_id, report, later)

    assert outcome is TokenOutcome.INVALIDATED
    assert device.status == DeviceStatus.INVALID
    assert (device.invalid_reason, device.invalidated_at, device.invalidated_by) == (
        report.reason,
        later,
        "worker:1",
    )
    async with sessions() as session:
        kinds = [e.kind for e in (await session.execute(select(TokenEvent))).scalars()]
    assert kinds == [TokenEventKind.REGISTERED, TokenEventKind.INVALIDATED]


@pytest.mark.parametrize(
    "report",
    [
        DeliveryReport(Outcome.SENT, provider_id="apns-id"),
        DeliveryReport(Outcome.RETRY, reason="TooManyRequests", status=429, retry_after=30),
        DeliveryReport(Outcome.RETRY, reason="InternalServerError", status=500),
        DeliveryReport(Outcome.RETRY, reason="timeout"),
        DeliveryReport(Outcome.FAILED, reason="InvalidProviderToken", status=403),
        DeliveryReport(Outcome.FAILED, reason="PayloadTooLarge", status=413),
        DeliveryReport(Outcome.FAILED, reason="THIRD_PARTY_AUTH_ERROR", status=401),
    ],
)
async def test_other_outcomes_never_touch_the_token(
    sessions: Sessions, report: DeliveryReport
) -> None:
    device_id = await new_device(sessions)
    outcome, device = await apply(sessions, device_id, report, T0 + timedelta(hours=1))
    assert outcome is TokenOutcome.UNTOUCHED
    assert device.status == DeviceStatus.ACTIVE and device.updated_at == T0


async def test_410_older_than_the_last_registration_keeps_the_token(sessions: Sessions) -> None:
    # the race: the app was reinstalled and registered at T0+10min, while a send that Apple
    # answered "invalid since T0+5min" was still in flight
    device_id = await new_device(sessions, now=T0 + timedelta(minutes=10))
    report = dead("Unregistered", 410, since=T0 + timedelta(minutes=5))

    outcome, device = await apply(sessions, device_id, report, T0 + timedelta(minutes=11))

    assert outcome is TokenOutcome.KEPT_REREGISTERED
    assert device.status == DeviceStatus.ACTIVE


async def test_410_newer_than_the_last_registration_invalidates(sessions: Sessions) -> None:
    device_id = await new_device(sessions, now=T0)
    report = dead("Unregistered", 410, since=T0 + timedelta(seconds=1))
    outcome, _ = await apply(sessions, device_id, report, T0 + timedelta(minutes=1))
    assert outcome is TokenOutcome.INVALIDATED


async def test_a_report_without_a_timestamp_invalidates_a_reregistered_token(
    sessions: Sessions,
) -> None:
    # Which answers carry a timestamp is the provider's business (for APNs only Unregistered:
    # tests/providers/test_apns_classification.py); the registry only compares what it is given.
    device_id = await new_device(sessions, now=T0 + timedelta(minutes=10))
    report = dead("ExpiredToken", 410)
    outcome, _ = await apply(sessions, device_id, report, T0 + timedelta(minutes=11))
    assert outcome is TokenOutcome.INVALIDATED


async def test_an_invalid_token_keeps_its_first_reason(sessions: Sessions) -> None:
    device_id = await new_device(sessions)
    await apply(sessions, device_id, dead("BadDeviceToken"), T0 + timedelta(minutes=1))
    outcome, device = await apply(
        sessions, device_id, dead("Unregistered", 410), T0 + timedelta(minutes=2)
    )
    assert outcome is TokenOutcome.UNTOUCHED
    assert device.invalid_reason == "BadDeviceToken"


async def test_report_for_a_deleted_device_is_ignored(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        outcome = await apply_report(
            session, "gone", dead("BadDeviceToken"), now=T0, actor="worker:1"
        )
    assert outcome is TokenOutcome.UNTOUCHED


async def test_guard_in_alarm_keeps_the_token_and_logs(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    guard = InvalidationGuard(window_seconds=300, min_sends=10, ratio=0.5)
    for second in range(10):
        guard.record("shop", dead("BadDeviceToken"), T0 + timedelta(seconds=second))
    device_id = await new_device(sessions)

    with caplog.at_level(logging.WARNING, logger="tokens.feedback"):
        outcome, device = await apply(
            sessions, device_id, dead("BadDeviceToken"), T0 + timedelta(seconds=10), guard
        )

    assert outcome is TokenOutcome.KEPT_GUARD
    assert device.status == DeviceStatus.ACTIVE
    assert "mass-invalidation guard" in caplog.text
    assert "abcdef" in caplog.text and "f" * 20 not in caplog.text  # suffix only


async def test_guard_of_another_app_does_not_block(sessions: Sessions) -> None:
    guard = InvalidationGuard(window_seconds=300, min_sends=10, ratio=0.5)
    for _ in range(20):
        guard.record("other-app", dead("BadDeviceToken"), T0)
    device_id = await new_device(sessions)
    outcome, _ = await apply(sessions, device_id, dead("BadDeviceToken"), T0, guard)
    assert outcome is TokenOutcome.INVALIDATED
