"""Pruning from provider feedback: turning ``TOKEN_DEAD`` reports into token invalidations.

A token is marked ``invalid`` (with the provider's reason, the time and the actor, plus an
audit event) when the provider says it is dead; it is purged later by the cleanup command,
never silently. Two exceptions keep a "dead" token:

- A report may carry the instant the provider last knew the token to be invalid (APNs does,
  for ``Unregistered``). If the app registered the token again after that instant, the report
  is older news than the registration and the token stays.
- :class:`InvalidationGuard` sees that an app's sends are failing with answers the provider
  marks as misconfiguration (a wrong APNs environment or topic, another FCM project) en masse,
  which means our configuration is wrong rather than a million phones are dead; while it is
  in alarm nothing of that app is invalidated.

Reports with any other outcome (sent, retry, failed: auth errors, 413, 429, 5xx) never touch the
token.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from tokens.models import Device, DeviceStatus, TokenEventKind, token_suffix
from tokens.registry import record_event
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)


class TokenOutcome(StrEnum):
    """What :func:`apply_report` did to the token."""

    INVALIDATED = "invalidated"
    KEPT_REREGISTERED = "kept_reregistered"  # 410 older than the token's last registration
    KEPT_GUARD = "kept_guard"  # the app's mass-invalidation guard is in alarm
    UNTOUCHED = "untouched"  # not a dead-token report, already invalid, or device gone


async def apply_report(
    session: AsyncSession,
    device_id: str,
    report: DeliveryReport,
    *,
    now: datetime,
    actor: str,
    guard: InvalidationGuard | None = None,
) -> TokenOutcome:
    """Apply one send result to the device's token; returns what happened to it.

    Does not feed ``guard``: the caller records every send result with
    :meth:`InvalidationGuard.record` (successes included, or the ratio means nothing).
    """
    if report.outcome is not Outcome.TOKEN_DEAD:
        return TokenOutcome.UNTOUCHED
    device = await session.get(Device, device_id, with_for_update=True, populate_existing=True)
    if device is None or device.status == DeviceStatus.INVALID:
        return TokenOutcome.UNTOUCHED
    suffix = token_suffix(device.token)
    if _reregistered_since(device, report):
        log.info(
            "kept token …%s of app %s: %s at %s is older than its registration at %s",
            suffix,
            device.app,
            report.reason,
            report.token_invalid_since,
            device.last_seen_at,
        )
        return TokenOutcome.KEPT_REREGISTERED
    if guard is not None and not guard.allows_invalidation(device.app, now):
        log.warning(
            "kept token …%s of app %s despite %s: mass-invalidation guard in alarm",
            suffix,
            device.app,
            report.reason,
        )
        return TokenOutcome.KEPT_GUARD
    reason = (report.reason or "token_dead")[:64]
    device.status = DeviceStatus.INVALID
    device.invalid_reason = reason
    device.invalidated_at = now
    device.invalidated_by = actor
    device.updated_at = now
    record_event(session, device, TokenEventKind.INVALIDATED, now=now, actor=actor, reason=reason)
    await session.flush()
    log.info("invalidated token …%s of app %s: %s", suffix, device.app, reason)
    return TokenOutcome.INVALIDATED


def _reregistered_since(device: Device, report: DeliveryReport) -> bool:
    return (
        report.token_invalid_since is not None and device.last_seen_at > report.token_invalid_since
    )


@dataclass
class _AppWindow:
    # (bucket start as epoch seconds, sends, misconfiguration signatures)
    buckets: deque[list[int]] = field(default_factory=deque)
    in_alarm: bool = False


class InvalidationGuard:
    """Stops invalidating an app's tokens while its sends look misconfigured, not dead.

    In memory, one per process. Counts every send result per app in a sliding window of
    ``window_seconds``, kept as ``BUCKETS_PER_WINDOW`` buckets so memory stays bounded whatever
    the send rate. The app is in alarm while, within the window, at least ``min_sends`` results
    came back and the share of reports marked ``misconfiguration`` is at least ``ratio``; an
    alarm is logged once per episode, and its end once.
    """

    BUCKETS_PER_WINDOW = 60

    def __init__(self, *, window_seconds: int, min_sends: int, ratio: float) -> None:
        self.window_seconds = window_seconds
        self.min_sends = min_sends
        self.ratio = ratio
        self._bucket_seconds = max(1, window_seconds // self.BUCKETS_PER_WINDOW)
        self._apps: dict[str, _AppWindow] = {}

    def record(self, app: str, report: DeliveryReport, now: datetime) -> None:
        """Count one send result of ``app`` at ``now``."""
        window = self._apps.setdefault(app, _AppWindow())
        start = int(now.timestamp()) // self._bucket_seconds * self._bucket_seconds
        buckets = window.buckets
        if not buckets or buckets[-1][0] < start:
            buckets.append([start, 0, 0])
        # a result stamped earlier than the newest bucket is counted in the newest one
        bucket = buckets[-1]
        bucket[1] += 1
        if report.misconfiguration:
            bucket[2] += 1
        self._update_alarm(app, window, now)

    def allows_invalidation(self, app: str, now: datetime) -> bool:
        """False while ``app`` is in alarm: its dead-token reports are not to be trusted."""
        window = self._apps.get(app)
        if window is None:
            return True
        return not self._update_alarm(app, window, now)

    def _update_alarm(self, app: str, window: _AppWindow, now: datetime) -> bool:
        horizon = now.timestamp() - self.window_seconds
        buckets = window.buckets
        while buckets and buckets[0][0] + self._bucket_seconds <= horizon:
            buckets.popleft()
        sends = sum(bucket[1] for bucket in buckets)
        suspicious = sum(bucket[2] for bucket in buckets)
        alarm = sends >= self.min_sends and suspicious >= self.ratio * sends
        if alarm and not window.in_alarm:
            log.error(
                "app %s: %d of %d sends in the last %ds came back with answers that mean a "
                "wrong configuration; not invalidating its tokens until this clears (wrong "
                "APNs environment or topic, or another FCM project?)",
                app,
                suspicious,
                sends,
                self.window_seconds,
            )
        elif window.in_alarm and not alarm:
            log.warning("app %s: mass-invalidation alarm cleared; invalidating again", app)
        window.in_alarm = alarm
        if not buckets and not alarm:
            del self._apps[app]  # forget idle apps
        return alarm

    def in_alarm(self, app: str) -> bool:
        """Whether ``app`` was in alarm at the last record or check."""
        window = self._apps.get(app)
        return window is not None and window.in_alarm
