"""Scheduled waves: N notifications for the same local 09:00 across 20 time zones.

``python -m bench.schedule_wave --count N --out FILE`` (run by :mod:`bench.run` in a process of
its own, so that its peak RSS is its own). The users are spread evenly over :data:`ZONES`, each
with one iOS device that reports its zone. Every notification is accepted the way
``POST /v1/notifications`` accepts ``{"send_at_local": "09:00"}``: resolved in the user's zone
(``schedule_local``), its expiry counted from that instant, decided (``decide_and_explain``:
deferred, reason ``scheduled``) and recorded, then written in bulk. The rows are the same as
the endpoint's; the bulk write only skips the HTTP round trips, which :mod:`bench.ingest`
measures.

Then a clock the benchmark controls steps from one zone's 09:00 to the next, as the day goes
round the world. A second before each, the scheduler's release job must release nothing; at
it, the release job and back-to-back delivery rounds run until nothing is due, against the
APNs simulator in its own process (answering after :data:`PROVIDER_LATENCY_MS`). Reported per
zone wave: how many, the time to release and deliver them, and the drain rate; overall, whether
every one was sent and none before 09:00 on its user's clock (each delivery's time, which is
the gateway's clock at the send, against its notification's instant, checked to be 09:00 in
its zone), and peak RSS.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import col, select

from bench.delivery import device_token, drain, worker_runtime
from bench.stack import (
    APP,
    SimulatorProcess,
    make_settings,
    peak_rss_mib,
    run_measure_process,
    settings_data,
)
from gateway.db import create_engine, session_factory, transaction, upgrade_database
from gateway.models import Delivery, Notification, NotificationStatus
from gateway.services.acceptance import WALL_TIME_FORMAT, decision_record
from policies import (
    Defer,
    DeferReason,
    Tier,
    UserFacts,
    decide_and_explain,
    parse_send_at_local,
    resolve_expiry,
    schedule_local,
)
from tokens.models import Device

# Twenty zones whose 09:00 come at different instants, from the first to see the day to the last.
ZONES = (
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Bangkok",
    "Asia/Dhaka",
    "Asia/Kolkata",
    "Asia/Karachi",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Athens",
    "Europe/Paris",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
)
LOCAL_TIME = "09:00"
SEED_BATCH = 5000
PROVIDER_LATENCY_MS = 20  # as in bench.wave: enough for requests to pile up in flight


class SteppedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def seed(sessions: Any, users: dict[str, str], now: datetime) -> None:
    """One active iOS device per user, reporting the user's zone."""
    names = list(users)
    for start in range(0, len(names), SEED_BATCH):
        async with transaction(sessions) as session:
            session.add_all(
                Device(
                    user_id=user,
                    app=APP,
                    platform="ios",
                    token=device_token("ios"),
                    timezone=users[user],
                    permission="granted",
                    created_at=now,
                    last_seen_at=now,
                    updated_at=now,
                )
                for user in names[start : start + SEED_BATCH]
            )


def accept(users: dict[str, str], policy: Any, now: datetime) -> list[dict[str, Any]]:
    """The rows ``POST /v1/notifications`` stores for ``send_at_local: "09:00"`` to each user."""
    local = parse_send_at_local(LOCAL_TIME)
    rows = []
    for user, zone in users.items():
        facts = UserFacts(user_id=user, device_timezone=zone, active_devices=1)
        schedule = schedule_local(now, policy.zones.load(zone), local)
        expires_at = resolve_expiry(schedule.instant, Tier.BEHAVIORAL, policy)
        decision, explanation = decide_and_explain(
            now, Tier.BEHAVIORAL, expires_at, facts, policy, scheduled_at=schedule.instant
        )
        if not (isinstance(decision, Defer) and decision.reason == DeferReason.SCHEDULED):
            raise RuntimeError(f"expected a scheduled deferral, got {decision}")
        rows.append(
            {
                "user_id": user,
                "app": APP,
                "tier": Tier.BEHAVIORAL,
                "classified_by": "tier",
                "status": NotificationStatus.DEFERRED,
                "reason": DeferReason.SCHEDULED,
                "title": "Good morning",
                "body": "Your daily summary is ready",
                "sender": "bench",
                "deliver_at": decision.until,
                "expires_at": expires_at,
                "created_at": now,
                "updated_at": now,
                "send_at": schedule.instant,
                "send_at_local": LOCAL_TIME,
                "scheduled_wall_time": schedule.wall.strftime(WALL_TIME_FORMAT),
                "scheduled_zone": schedule.zone,
                "decision": decision_record(decision, explanation, now=now),
            }
        )
    return rows


async def run_waves(count: int, database_url: str) -> dict[str, Any]:
    accepted_at = datetime.now(UTC)
    users = {f"sched-user-{i}": ZONES[i % len(ZONES)] for i in range(count)}
    async with SimulatorProcess() as sims:
        settings = make_settings(settings_data(database_url, sims.sections))
        policy = settings.policy_settings()
        engine = create_engine(settings.database)
        await upgrade_database(engine)
        sessions = session_factory(engine)
        await seed(sessions, users, accepted_at)
        rows = accept(users, policy, accepted_at)
        for start in range(0, len(rows), SEED_BATCH):
            async with transaction(sessions) as session:
                await session.execute(sa.insert(Notification), rows[start : start + SEED_BATCH])

        nine = {
            zone: next(r["send_at"] for r in rows if r["scheduled_zone"] == zone) for zone in ZONES
        }
        by_instant: dict[datetime, list[str]] = defaultdict(list)
        for zone, instant in nine.items():
            by_instant[instant].append(zone)
        expected = Counter(users.values())

        clock = SteppedClock(min(by_instant) - timedelta(seconds=1))
        stack = contextlib.AsyncExitStack()
        runtime = await stack.enter_async_context(worker_runtime(settings, engine, clock))
        assert runtime.worker is not None and runtime.jobs is not None
        worker, jobs = runtime.worker, runtime.jobs
        await sims.command(f"latency {PROVIDER_LATENCY_MS}")
        await sims.reset()
        waves = []
        released_early = 0
        started = time.perf_counter()
        try:
            for instant in sorted(by_instant):
                clock.now = instant - timedelta(seconds=1)
                released_early += await jobs.release()
                clock.now = instant
                wave_started = time.perf_counter()
                released = await jobs.release()
                release_seconds = time.perf_counter() - wave_started
                delivered = (await drain(worker)).finished_notifications
                seconds = time.perf_counter() - wave_started
                zones = by_instant[instant]
                waves.append(
                    {
                        "zones": zones,
                        "local_0900_utc": instant.isoformat(),
                        "expected": sum(expected[zone] for zone in zones),
                        "released": released,
                        "delivered": delivered,
                        "release_seconds": release_seconds,
                        "seconds": seconds,
                        "per_second": delivered / seconds if seconds else 0.0,
                    }
                )
        finally:
            elapsed = time.perf_counter() - started
            await stack.aclose()
        stats = await sims.stats()
        async with sessions() as session:
            statuses = dict(
                (
                    await session.execute(
                        select(Notification.status, sa.func.count()).group_by(
                            col(Notification.status)
                        )
                    )
                ).all()
            )
            # every delivery against its notification's instant: none may precede it
            sent_early = await session.scalar(
                select(sa.func.count())
                .select_from(Delivery)
                .join(Notification, col(Notification.id) == col(Delivery.notification_id))
                .where(col(Delivery.updated_at) < col(Notification.send_at))
            )
            instants = (
                await session.execute(
                    select(Notification.scheduled_zone, Notification.send_at).distinct()
                )
            ).all()
        await engine.dispose()

    at_nine = all(
        send_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") == LOCAL_TIME
        for zone, send_at in instants
    )
    rates = sorted(wave["per_second"] for wave in waves)
    return {
        "count": count,
        "database": "sqlite" if "sqlite" in database_url else "postgresql",
        "zones": len(ZONES),
        "waves": waves,
        "wave_count": len(waves),
        "seconds": elapsed,
        "median_wave_per_second": rates[len(rates) // 2],
        "slowest_wave_per_second": rates[0],
        "fastest_wave_per_second": rates[-1],
        "statuses": statuses,
        "all_sent": statuses == {"sent": count},
        "released_early": released_early,
        "each_wave_released_exactly_its_zones": all(
            wave["released"] == wave["expected"] for wave in waves
        ),
        "instants_at_local_0900": at_nine,
        "sent_before_their_instant": sent_early,
        "none_before_local_0900": released_early == 0 and at_nine and sent_early == 0,
        "simulator_answered": stats["apns_answered"],
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> int:
    return run_measure_process(run_waves, default_count=2000, doc=__doc__ or "")


if __name__ == "__main__":
    raise SystemExit(main())
