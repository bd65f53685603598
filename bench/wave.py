"""Release wave: N deferred notifications whose quiet hours end at the same minute.

``python -m bench.wave --count N --out FILE`` (run by :mod:`bench.run` in a process of its own,
so that its peak RSS is the wave's). Every user is in ``America/New_York`` with one iOS device;
the configured quiet hours end at the next full local minute, so the policy (``decide``, the
same call ``POST /v1/notifications`` makes) defers each behavioral notification to that minute
plus the user's stable offset in ``[0, release_spread_minutes)``. The rows are written in bulk.
Then a clock the benchmark controls walks through the spread a minute at a time, and at each
minute the scheduler's release job (:meth:`GatewayJobs.release`) and back-to-back delivery rounds
run until nothing is due, against the APNs simulator in its own process. Reported: the wall
time to drain (release + deliver), per minute of the spread how many were released, the peak
number of requests in flight at the simulator (which answers after
:data:`PROVIDER_LATENCY_MS`) against ``delivery.concurrency_per_app``, peak RSS, and two ratios:
against the concurrency bound (limit / latency) and against unmodified aioapns sending to the
same simulator at the same latency and concurrency in the same run.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from bench.delivery import drain, raw_apns_client, raw_apns_send, seed_devices, worker_runtime
from bench.stack import (
    APP,
    SimulatorProcess,
    make_settings,
    peak_rss_mib,
    run_measure_process,
    settings_data,
)
from gateway.db import create_engine, session_factory, transaction, upgrade_database
from gateway.models import Notification, NotificationStatus
from policies import Defer, Tier, UserFacts, decide
from policies.timezones import load_zone

ZONE = "America/New_York"
SEED_BATCH = 5000
# APNs answers after a real round trip's worth of time, so that requests pile up in flight and
# the concurrency limit is really put to the test (an instant simulator never sees more than a
# few at once).
PROVIDER_LATENCY_MS = 20
# The raw client's run beside the wave: long enough to be steady, short enough not to double
# the wave's time.
RAW_CEILING_COUNT = 20_000


class SteppedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def quiet_hours_ending_soon(now: datetime) -> tuple[dict[str, str], datetime]:
    """Quiet hours (local HH:MM) that hold at ``now`` and end at the next full local minute
    (at least one minute ahead), and that end as an instant."""
    local = now.astimezone(load_zone(ZONE))
    end = (local + timedelta(minutes=2)).replace(second=0, microsecond=0)
    start = local - timedelta(hours=1)
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}
    return window, end.astimezone(UTC)


async def run_wave(count: int, database_url: str) -> dict[str, Any]:
    accepted_at = datetime.now(UTC)
    window, quiet_end = quiet_hours_ending_soon(accepted_at)
    async with SimulatorProcess() as sims:
        data = settings_data(database_url, sims.sections, policy={"default_timezone": ZONE})
        data["policy"]["quiet_hours"] = window
        settings = make_settings(data)
        policy = settings.policy_settings()
        engine = create_engine(settings.database)
        await upgrade_database(engine)
        sessions = session_factory(engine)

        users = [f"wave-user-{i}" for i in range(count)]
        devices: dict[str, str] = {}
        for start in range(0, count, SEED_BATCH):
            devices |= await seed_devices(
                sessions, users[start : start + SEED_BATCH], "ios", accepted_at
            )
        expires_at = accepted_at + timedelta(days=1)
        deliver_at: dict[str, datetime] = {}
        for user in users:
            facts = UserFacts(user_id=user, timezone=ZONE, active_devices=1)
            decision = decide(accepted_at, Tier.BEHAVIORAL, expires_at, facts, policy)
            if not isinstance(decision, Defer):
                raise RuntimeError(f"expected a deferral at {accepted_at}, got {decision}")
            deliver_at[user] = decision.until
        for start in range(0, count, SEED_BATCH):
            async with transaction(sessions) as session:
                await session.execute(
                    sa.insert(Notification),
                    [
                        {
                            "user_id": user,
                            "app": APP,
                            "tier": Tier.BEHAVIORAL,
                            "classified_by": "tier",
                            "status": NotificationStatus.DEFERRED,
                            "reason": "quiet_hours",
                            "title": "Your cart misses you",
                            "body": "Three items are waiting",
                            "sender": "bench",
                            "deliver_at": deliver_at[user],
                            "expires_at": expires_at,
                            "created_at": accepted_at,
                            "updated_at": accepted_at,
                        }
                        for user in users[start : start + SEED_BATCH]
                    ],
                )

        clock = SteppedClock(quiet_end)
        stack = contextlib.AsyncExitStack()
        runtime = await stack.enter_async_context(worker_runtime(settings, engine, clock))
        assert runtime.worker is not None and runtime.jobs is not None
        worker, jobs = runtime.worker, runtime.jobs
        spread = settings.policy.release_spread_minutes
        released_per_minute: list[int] = []
        delivered = 0
        await sims.command(f"latency {PROVIDER_LATENCY_MS}")
        await sims.reset()
        started = time.perf_counter()
        try:
            for minute in range(spread + 1):
                clock.now = quiet_end + timedelta(minutes=minute)
                released_per_minute.append(await jobs.release())
                delivered += (await drain(worker)).finished_notifications
        finally:
            elapsed = time.perf_counter() - started
            await stack.aclose()
        stats = await sims.stats()
        # The ceiling in the same run: unmodified aioapns against the same simulator, at the
        # same latency and concurrency. On a small machine it, not the concurrency bound, is
        # what the client library can reach.
        raw_count = min(count, RAW_CEILING_COUNT)
        raw_client = raw_apns_client(sims.sections)
        raw_started = time.perf_counter()
        try:
            raw_sent = await raw_apns_send(
                raw_client, raw_count, settings.delivery.concurrency_per_app
            )
        finally:
            raw_elapsed = time.perf_counter() - raw_started
            raw_client.pool.close()
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
        await engine.dispose()

    offsets = Counter(int((deliver_at[user] - quiet_end).total_seconds() // 60) for user in users)
    # Released on time: by each minute exactly those whose deliver_at had come, none before.
    due = sorted(deliver_at.values())
    on_time = all(
        sum(released_per_minute[: minute + 1])
        == bisect.bisect_right(due, quiet_end + timedelta(minutes=minute))
        for minute in range(spread + 1)
    )
    even_share = count / spread
    limit = settings.delivery.concurrency_per_app
    rate = delivered / elapsed if elapsed else 0.0
    raw_rate = raw_sent / raw_elapsed if raw_elapsed else 0.0
    bound = limit / (PROVIDER_LATENCY_MS / 1000)
    return {
        "count": count,
        "database": "sqlite" if "sqlite" in database_url else "postgresql",
        "spread_minutes": spread,
        "drain_seconds": elapsed,
        "delivered": delivered,
        "delivered_per_second": rate,
        "concurrency_bound_per_second": bound,
        "ratio_to_concurrency_bound": rate / bound,
        "raw_aioapns_per_second": raw_rate,
        "raw_aioapns_sent": raw_sent,
        "ratio_to_raw_aioapns": rate / raw_rate if raw_rate else 0.0,
        "statuses": statuses,
        "released_per_minute": released_per_minute,
        "deliver_at_per_offset_minute": [offsets.get(m, 0) for m in range(spread)],
        "spread_held": (
            len(offsets) == spread
            and max(offsets.values()) <= math.ceil(even_share * 1.5) + 5
            and max(released_per_minute) <= math.ceil(even_share * 1.5) + 5
            and on_time
        ),
        "released_on_time": on_time,
        "simulator_answered": stats["apns_answered"],
        "peak_in_flight_at_simulator": stats["apns_peak_in_flight"],
        "concurrency_limit": limit,
        "provider_latency_ms": PROVIDER_LATENCY_MS,
        "concurrency_held": stats["apns_peak_in_flight"] <= limit,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> int:
    return run_measure_process(run_wave, default_count=5000, doc=__doc__ or "")


if __name__ == "__main__":
    raise SystemExit(main())
