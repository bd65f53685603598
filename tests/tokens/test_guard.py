"""The mass-invalidation guard on its own: window, thresholds, episodes, bounded memory."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from tokens import InvalidationGuard
from tokens.reports import DeliveryReport, Outcome

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# what a provider marks as a sign of misconfiguration (APNs BadDeviceToken, FCM
# SENDER_ID_MISMATCH); the guard reads only the flag, never the reason
BAD = DeliveryReport(Outcome.TOKEN_DEAD, reason="BadDeviceToken", status=400, misconfiguration=True)
GONE = DeliveryReport(Outcome.TOKEN_DEAD, reason="Unregistered", status=410)
SENT = DeliveryReport(Outcome.SENT, provider_id="id")


def guard() -> InvalidationGuard:
    return InvalidationGuard(window_seconds=300, min_sends=50, ratio=0.5)


def feed(g: InvalidationGuard, report: DeliveryReport, count: int, at: datetime) -> None:
    for _ in range(count):
        g.record("shop", report, at)


def test_allows_with_no_history() -> None:
    assert guard().allows_invalidation("shop", T0)


def test_too_few_sends_never_alarm() -> None:
    g = guard()
    feed(g, BAD, 49, T0)
    assert g.allows_invalidation("shop", T0)


def test_alarm_at_the_ratio_with_enough_sends() -> None:
    g = guard()
    feed(g, SENT, 25, T0)
    feed(g, BAD, 24, T0)
    assert g.allows_invalidation("shop", T0)  # 49 sends: below min_sends
    feed(g, BAD, 1, T0)
    assert not g.allows_invalidation("shop", T0)  # 25 of 50 = ratio


def test_ordinary_dead_tokens_do_not_alarm() -> None:
    g = guard()
    feed(g, GONE, 100, T0)  # uninstalls are normal churn, not misconfiguration
    assert g.allows_invalidation("shop", T0)


def test_alarm_clears_once_the_window_has_passed() -> None:
    g = guard()
    feed(g, BAD, 60, T0)
    assert not g.allows_invalidation("shop", T0 + timedelta(seconds=290))
    assert g.allows_invalidation("shop", T0 + timedelta(seconds=310))


def test_alarm_clears_when_successes_dilute_the_share() -> None:
    g = guard()
    feed(g, BAD, 60, T0)
    feed(g, SENT, 61, T0 + timedelta(seconds=30))
    assert g.allows_invalidation("shop", T0 + timedelta(seconds=30))


def test_alarm_logged_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    g = guard()
    with caplog.at_level(logging.WARNING, logger="tokens.feedback"):
        feed(g, BAD, 200, T0)
        g.allows_invalidation("shop", T0)
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
        g.allows_invalidation("shop", T0 + timedelta(seconds=400))  # episode over
        feed(g, BAD, 60, T0 + timedelta(seconds=500))  # a new one
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "shop" in errors[0].getMessage()


def test_memory_is_bounded_by_buckets_not_sends() -> None:
    g = guard()
    for second in range(3_600):
        g.record("shop", SENT, T0 + timedelta(seconds=second))
    window = g._apps["shop"]
    assert len(window.buckets) <= InvalidationGuard.BUCKETS_PER_WINDOW + 1


def test_idle_apps_are_forgotten() -> None:
    g = guard()
    feed(g, SENT, 1, T0)
    g.allows_invalidation("shop", T0 + timedelta(hours=1))
    assert "shop" not in g._apps
