"""The delivery worker: claim due deliveries, send them, record what the provider said.

The data path of one round: claim (lease) → build messages → provider ``send`` → report →
delivery status and token outcome → the notification's final status. The SQL of each step is
in :mod:`gateway.delivery.queue`; this module decides what to send, when to hold back (the
circuit breaker, the send window) and what each report means for its delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.config import DeliveryConfig
from gateway.db import storage_unavailable
from gateway.delivery.queue import (
    ClaimedDelivery,
    DeliveryQueue,
    QueuedNotification,
    Recorded,
    Result,
    Settled,
)
from gateway.delivery.recorder import ResultRecorder
from gateway.metrics import Metrics, reason_label
from gateway.models import DeliveryEnd, DeliveryStatus
from gateway.providers.base import Provider, PushMessage
from gateway.providers.registry import provider_for
from policies.tiers import Tier
from tokens.models import DeviceState, DeviceStatus, Environment, Platform
from tokens.registry import is_deliverable
from tokens.reports import DeliveryReport, Outcome

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ProviderLookup = Callable[[str, Platform], Provider]
"""The provider that sends for (app, platform)."""

# A delivery error that means "ran out of time"
EXPIRED = "expired"
# Delivery rounds one worker runs at once (see DeliveryWorker.drain): two lets one round's
# claim and record overlap the other's sends.
ROUNDS_IN_FLIGHT = 2


def worker_identity() -> str:
    """Names the lease holder in the database: host, process and a random part."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_delay(attempt: int, config: DeliveryConfig, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    ceiling = min(config.backoff_max_seconds, config.backoff_base_seconds * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` transient failures in a row of one provider and app; while
    open, that provider's deliveries wait (they are not attempted and do not use up attempts).
    After ``reset_seconds`` one round is let through: a success closes it, a failure reopens."""

    threshold: int
    reset_seconds: float
    failures: int = 0
    open_until: datetime | None = None

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and now < self.open_until

    def record(self, outcome: Outcome, now: datetime) -> None:
        if outcome is Outcome.RETRY:
            self.failures += 1
            if self.failures >= self.threshold:
                self.open_until = now + timedelta(seconds=self.reset_seconds)
        else:
            self.failures = 0
            self.open_until = None


@dataclass
class RoundResult:
    """What one round did, for logs, metrics and tests."""

    claimed: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: defaultdict(int))
    waiting_on_breaker: int = 0
    finished_notifications: int = 0

    def add(self, other: RoundResult) -> None:
        self.claimed += other.claimed
        self.waiting_on_breaker += other.waiting_on_breaker
        self.finished_notifications += other.finished_notifications
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] += count


def unsendable(item: ClaimedDelivery, now: datetime) -> Settled | None:
    """Why a claimed delivery must not go out at all; ``None`` to send it.

    A delivery can wait a long time (retries, an open breaker, an outage) while the world
    moves: it never goes out late, and never to a device that has since been invalidated by
    another send's feedback, gone stale, or denied permission.
    """
    attempts = item.attempts
    if item.notification.expires_at <= now:
        return Settled(DeliveryStatus.FAILED, attempts, EXPIRED, end_reason=DeliveryEnd.EXPIRED)
    device = item.device
    if is_deliverable(device, item.app):
        return None
    if device.status == DeviceStatus.INVALID:
        reason = f"device_invalid: {device.invalid_reason or 'unknown'}"
    elif device.status == DeviceStatus.STALE:
        reason = "device_stale"
    else:
        reason = "permission_denied"
    return Settled(
        DeliveryStatus.FAILED, attempts, reason[:256], end_reason=DeliveryEnd.DEVICE_UNAVAILABLE
    )


def push_message(notification: QueuedNotification, device: DeviceState) -> PushMessage:
    return PushMessage(
        token=device.token,
        tier=Tier(notification.tier),
        expires_at=notification.expires_at,
        environment=Environment(device.environment),
        title=notification.title,
        body=notification.body,
        data=notification.data or {},
        badge=notification.badge,
        sound=notification.sound,
        thread_id=notification.thread_id,
        collapse_key=notification.collapse_key,
        notification_id=notification.id,
    )


def log_delivery_outcome(written: Result) -> None:
    """The ``delivery.outcome`` event of one recorded result: how the attempt ended (or why
    none was made), with the provider's own id and words. Never the token (its last 6
    characters only), the title or the body."""
    item, report, settled = written.item, written.report, written.settled
    notification, device = item.notification, item.device
    provider = written.provider or provider_for(device.platform).name
    latency_ms = round(written.latency * 1000, 3) if written.latency is not None else None
    reason = settled.error if settled.status != DeliveryStatus.SENT else None
    log.info(
        "delivery %s of notification %s to device %s: %s via %s (provider status %s, "
        "reason %s, id %s), attempt %d, %s ms",
        item.delivery_id,
        notification.id,
        device.id,
        settled.status,
        provider,
        report.status,
        reason,
        report.provider_id,
        settled.attempts,
        latency_ms,
        extra={
            "event": "delivery.outcome",
            "request_id": notification.request_id,
            "notification_id": notification.id,
            "delivery_id": item.delivery_id,
            "device_id": device.id,
            "token": f"…{device.token[-6:]}",
            "app": item.app,
            "platform": device.platform,
            "provider": provider,
            "sent": written.sent,
            "status": str(settled.status),
            "outcome": str(report.outcome) if written.sent else None,
            "provider_status": report.status,
            "reason": reason,
            "provider_id": report.provider_id,
            "attempt": settled.attempts,
            "latency_ms": latency_ms,
            "next_attempt_at": (
                settled.next_attempt_at.isoformat() if settled.next_attempt_at is not None else None
            ),
        },
    )


class DeliveryWorker:
    """Runs delivery rounds until stopped; :meth:`wake` starts a round at once (the immediate
    path for notifications queued by the API in this process)."""

    UNRECORDED_PER_CONCURRENCY = 2

    def __init__(
        self,
        queue: DeliveryQueue,
        providers: ProviderLookup,
        config: DeliveryConfig,
        *,
        clock: Clock,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.providers = providers
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.batch_size = config.release_batch_size
        self.rng = rng or random.Random()
        self.breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running = False
        self._limits: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._unrecorded: dict[tuple[str, str], asyncio.Semaphore] = {}
        # deliveries of this worker's rounds in flight: never claimed again while they are out,
        # even when a slow round outlives its lease (the owner name would match)
        self._out: set[str] = set()
        self.recorder = ResultRecorder(queue, clock, self._count)

    @property
    def owner(self) -> str:
        return self.queue.owner

    @property
    def is_running(self) -> bool:
        """Whether :meth:`run` is delivering (readiness asks)."""
        return self._running

    # -- running -------------------------------------------------------------------------------

    def wake(self, _ids: Sequence[str] = ()) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver until :meth:`stop`; a failing round is logged and retried, never fatal."""
        log.info("delivery worker %s started", self.owner)
        self._running = True
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self.drain()
                except Exception as error:
                    reason = storage_unavailable(error)
                    if reason is None:
                        log.exception("delivery round failed; retrying after the poll interval")
                    else:  # an outage is not a bug: say what, not where
                        log.warning("delivery paused: %s; retrying after the poll interval", reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_seconds)
        finally:
            self._running = False
        await self.recorder.close()
        log.info("delivery worker %s stopped", self.owner)

    async def drain(self) -> RoundResult:
        """Rounds back to back until a claim comes back short of a full batch (or :meth:`stop`).

        The next batch is claimed, and starts sending, while the previous one is still being
        sent and recorded: at most :data:`ROUNDS_IN_FLIGHT` rounds at once, so the database's
        turn in one round overlaps the provider's in the other. ``concurrency_per_app`` holds
        across them (one semaphore per app and platform)."""
        total = RoundResult()
        rounds: list[asyncio.Task[RoundResult]] = []
        try:
            while not self._stopping.is_set():
                now = self.clock()
                claimed = await self.claim(now)
                if claimed:
                    out = {item.delivery_id for item in claimed}
                    self._out |= out  # before the next claim's query is built
                    rounds.append(asyncio.create_task(self._deliver_out(claimed, out, now)))
                if len(rounds) >= ROUNDS_IN_FLIGHT or (rounds and len(claimed) < self.batch_size):
                    total.add(await rounds.pop(0))
                if len(claimed) < self.batch_size:
                    break
        finally:
            # a round that failed must not leave the other one running unawaited
            for result in await asyncio.gather(*rounds, return_exceptions=True):
                if isinstance(result, RoundResult):
                    total.add(result)
                elif isinstance(result, BaseException):
                    log.error("delivery round failed", exc_info=result)
        return total

    async def _deliver_out(
        self, claimed: list[ClaimedDelivery], out: set[str], now: datetime
    ) -> RoundResult:
        try:
            return await self.deliver_claimed(claimed, now)
        finally:
            self._out -= out

    async def run_round(self) -> RoundResult:
        """Claim one batch of due deliveries, send it, record the results."""
        now = self.clock()
        return await self.deliver_claimed(await self.claim(now), now)

    async def claim(self, now: datetime) -> list[ClaimedDelivery]:
        """Lease the next batch of due deliveries, never one this worker still has out."""
        return await self.queue.claim(now, self.batch_size, exclude=self._out)

    async def deliver_claimed(self, claimed: list[ClaimedDelivery], now: datetime) -> RoundResult:
        """Send a claimed batch; each result is recorded as it arrives."""
        result = RoundResult(claimed=len(claimed))
        held_back = []
        sendable = []
        for item in claimed:
            settled = unsendable(item, now)
            if settled is None:
                sendable.append(item)
            else:
                report = DeliveryReport(Outcome.FAILED, reason=settled.error)
                held_back.append(self._record(Result(item, report, settled, sent=False), result))
        groups: dict[tuple[str, str], list[ClaimedDelivery]] = defaultdict(list)
        for item in sendable:
            groups[(item.app, item.device.platform)].append(item)
        await asyncio.gather(
            *held_back,
            *(
                self._deliver_group(app, platform, items, result)
                for (app, platform), items in groups.items()
            ),
        )
        return result

    async def _record(self, written: Result, result: RoundResult) -> None:
        """Record one result (group-committed with whatever else arrives) and count it in the
        round once it is committed."""
        outcome = await self.recorder.record(written)
        if outcome.written and written.sent:
            result.outcomes[written.report.outcome] += 1
        if outcome.finished:
            result.finished_notifications += 1

    # -- sending -------------------------------------------------------------------------------

    def _breaker(self, app: str, platform: str) -> CircuitBreaker:
        key = (app, platform)
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(
                self.config.breaker_failure_threshold, self.config.breaker_reset_seconds
            )
        return self.breakers[key]

    def _limit(self, app: str, platform: str) -> asyncio.Semaphore:
        """Requests of one app and platform at the provider, awaiting their answer."""
        key = (app, platform)
        if key not in self._limits:
            self._limits[key] = asyncio.Semaphore(self.config.concurrency_per_app)
        return self._limits[key]

    def _unrecorded_limit(self, app: str, platform: str) -> asyncio.Semaphore:
        """Requests of one app and platform sent and not yet recorded: what a crash would send
        again. Twice the provider's concurrency, so a commit in progress does not hold sends
        back, yet a database slower than the provider cannot let answers pile up unrecorded."""
        key = (app, platform)
        if key not in self._unrecorded:
            self._unrecorded[key] = asyncio.Semaphore(
                self.UNRECORDED_PER_CONCURRENCY * self.config.concurrency_per_app
            )
        return self._unrecorded[key]

    async def _deliver_group(
        self, app: str, platform: str, items: list[ClaimedDelivery], result: RoundResult
    ) -> None:
        provider_name = provider_for(platform).name
        breaker = self._breaker(app, platform)
        now = self.clock()
        if breaker.is_open(now):
            assert breaker.open_until is not None
            await self.queue.postpone(items, breaker.open_until, now)
            result.waiting_on_breaker += len(items)
            return
        provider = self.providers(app, Platform(platform))
        limit = self._limit(app, platform)
        unrecorded = self._unrecorded_limit(app, platform)
        in_flight = self.metrics.provider_in_flight.labels(provider_name, app)
        send_seconds = self.metrics.provider_send_seconds.labels(provider_name, app)

        held: list[ClaimedDelivery] = []
        held_until: list[datetime] = []

        async def send_one(item: ClaimedDelivery) -> None:
            # a sliding window: the next send starts as soon as any one answers, not when the
            # slowest of a chunk does
            async with unrecorded:
                async with limit:
                    # the other round in flight may have opened the breaker meanwhile
                    if breaker.is_open(self.clock()):
                        assert breaker.open_until is not None
                        held.append(item)
                        held_until.append(breaker.open_until)
                        return
                    started = time.perf_counter()
                    with in_flight.track_inprogress():
                        (report,) = await self._send(provider, [item])
                    latency = time.perf_counter() - started
                send_seconds.observe(latency)
                self.metrics.provider_responses.labels(
                    provider_name,
                    app,
                    str(report.status) if report.status is not None else "none",
                    reason_label(report.reason),
                ).inc()
                # recorded the moment it arrives: after this commit a crash never sends it again
                settled = self.settle(item, report, self.clock())
                written = Result(item, report, settled, provider=provider_name, latency=latency)
                await self._record(written, result)

        await asyncio.gather(*(send_one(item) for item in items))
        now = self.clock()
        if held:
            await self.queue.postpone(held, max(held_until), now)
            result.waiting_on_breaker += len(held)
        # also when the whole group was held: the gauge says the breaker is open
        self.metrics.breaker_open.labels(provider_name, app).set(int(breaker.is_open(now)))

    def _count(self, recorded: Recorded) -> None:
        """Metrics, breakers and the delivery log events, from what a commit wrote: only
        results this worker recorded count (a late one after a lost lease is not news), and
        only real sends move the metrics and breakers."""
        now = self.clock()
        for written in recorded.results:
            log_delivery_outcome(written)
            if not written.sent:
                continue
            outcome = written.report.outcome
            app, platform = written.item.app, written.item.device.platform
            self._breaker(app, platform).record(outcome, now)
            self.metrics.deliveries.labels(written.provider, app, outcome).inc()
            if written.settled.status == DeliveryStatus.PENDING:
                self.metrics.retries.labels(written.provider, app).inc()
        for invalidated in recorded.invalidated:
            self.metrics.tokens_invalidated.labels(
                invalidated.item.app,
                invalidated.item.device.platform,
                invalidated.report.reason or "",
            ).inc()

    async def _send(self, provider: Provider, items: list[ClaimedDelivery]) -> list[DeliveryReport]:
        messages = [push_message(item.notification, item.device) for item in items]
        try:
            reports = await provider.send(messages)
        except Exception as exc:  # a provider must not raise; if one does, nothing is lost
            log.exception("provider raised instead of reporting; retrying the batch")
            return [
                DeliveryReport(Outcome.RETRY, reason=f"provider_error: {type(exc).__name__}")
            ] * len(items)
        if len(reports) != len(items):
            log.error("provider returned %d reports for %d messages", len(reports), len(items))
            return [DeliveryReport(Outcome.RETRY, reason="provider_error: report count")] * len(
                items
            )
        return reports

    # -- what a report means -------------------------------------------------------------------

    async def record_reports(
        self, items: Sequence[ClaimedDelivery], reports: Sequence[DeliveryReport], now: datetime
    ) -> Recorded:
        """Settle each claimed delivery by its provider's report and record them in one
        commit (only while this worker still holds their leases)."""
        recorded = await self.queue.record(
            [
                Result(
                    item,
                    report,
                    self.settle(item, report, now),
                    provider=provider_for(item.device.platform).name,
                )
                for item, report in zip(items, reports, strict=True)
            ],
            now,
        )
        self._count(recorded)
        return recorded

    def settle(self, item: ClaimedDelivery, report: DeliveryReport, now: datetime) -> Settled:
        """What the delivery becomes after ``report``: ended, or pending for another attempt
        after a backoff (at least ``Retry-After``) while attempts and time remain."""
        attempts = item.attempts + 1
        match report.outcome:
            case Outcome.SENT:
                return Settled(
                    DeliveryStatus.SENT,
                    attempts,
                    provider_id=report.provider_id,
                    end_reason=DeliveryEnd.DELIVERED,
                )
            case Outcome.TOKEN_DEAD:
                return Settled(
                    DeliveryStatus.INVALID_TOKEN,
                    attempts,
                    report.reason,
                    report.provider_id,
                    DeliveryEnd.TOKEN_DEAD,
                )
            case Outcome.FAILED:
                return Settled(
                    DeliveryStatus.FAILED,
                    attempts,
                    report.reason,
                    report.provider_id,
                    DeliveryEnd.REJECTED,
                )
        delay = backoff_delay(attempts, self.config, self.rng)
        if report.retry_after is not None:
            delay = max(delay, report.retry_after)
        # Compared as seconds before any datetime arithmetic: a provider may ask for an absurd
        # Retry-After (10^30 seconds, inf), which no datetime can hold.
        time_left = (item.notification.expires_at - now).total_seconds()
        if attempts >= self.config.max_attempts or delay >= time_left:
            exhausted = attempts >= self.config.max_attempts
            why = "attempts exhausted" if exhausted else EXPIRED
            return Settled(
                DeliveryStatus.FAILED,
                attempts,
                f"{(report.reason or 'transient error')[:200]} ({why})",
                end_reason=DeliveryEnd.ATTEMPTS_EXHAUSTED if exhausted else DeliveryEnd.EXPIRED,
            )
        return Settled(
            DeliveryStatus.PENDING,
            attempts,
            report.reason,
            next_attempt_at=now + timedelta(seconds=delay),
        )
