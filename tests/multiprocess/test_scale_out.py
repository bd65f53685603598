"""Several ``pushgate serve`` workers on one PostgreSQL share the release and delivery
queues with ``FOR UPDATE SKIP LOCKED``: every notification is delivered exactly once.

Each worker process delivers to an APNs simulator of its own, so the two simulators together
must have seen every token exactly once, and each must have seen some: both processes took part.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DatabaseConfig
from gateway.db import create_engine, upgrade_database
from gateway.models import DeliveryStatus, NotificationStatus
from gateway.simulators.apns import ApnsSimulator
from tests.conftest import drop_postgres_schema, make_postgres_schema_url, require_postgres
from tests.multiprocess.conftest import GatewayFactory
from tests.multiprocess.harness import (
    TOPIC,
    all_final,
    delivery_rows,
    notification_status_counts,
    seed_due_deferred,
    wait_until,
    write_config,
)

NOTIFICATIONS = 20_000
RELEASED_LINE = re.compile(r"released (\d+) deferred notifications")

pytestmark = pytest.mark.postgres


@pytest.fixture
async def postgres() -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A migrated PostgreSQL schema of its own: (url, engine)."""
    await require_postgres()
    url, schema = await make_postgres_schema_url()
    engine = create_engine(DatabaseConfig(url=url))
    try:
        await upgrade_database(engine)
        yield url, engine
    finally:
        await engine.dispose()
        await drop_postgres_schema(schema)


# Tens of seconds on 2 cores, most of it the 20k sends through two workers (release works on
# whole batches: one select, grouped updates).
@pytest.mark.slow
async def test_two_workers_release_20k_due_notifications_exactly_once(
    postgres: tuple[str, AsyncEngine], gateways: GatewayFactory, tmp_path: Path
) -> None:
    url, engine = postgres
    seeded = await seed_due_deferred(engine, count=NOTIFICATIONS, now=datetime.now(UTC))
    async with ApnsSimulator() as apns_a, ApnsSimulator() as apns_b:
        workers = []
        for name, simulator in (("worker-a", apns_a), ("worker-b", apns_b)):
            config = write_config(
                tmp_path / f"{name}.toml",
                database_url=url,
                apns=simulator.apns_config(TOPIC),
                delivery={"lease_seconds": 30, "poll_interval_seconds": 0.2},
            )
            workers.append(gateways(config, name, args=["--worker-only"]))
        started = time.monotonic()
        for worker in workers:
            await worker.start()
        drained_in = await wait_until(
            lambda: all_final(engine, NOTIFICATIONS),
            within_seconds=600,
            what=f"all {NOTIFICATIONS} notifications final",
            interval=0.5,
        )
        elapsed = time.monotonic() - started
        for worker in workers:
            await worker.stop()
        tokens_a = Counter(request.token for request in apns_a.requests)
        tokens_b = Counter(request.token for request in apns_b.requests)

    assert await notification_status_counts(engine) == {NotificationStatus.SENT: NOTIFICATIONS}
    rows = await delivery_rows(engine)
    assert len(rows) == NOTIFICATIONS
    assert Counter(row.status for row in rows) == {DeliveryStatus.SENT: NOTIFICATIONS}
    assert {row.attempts for row in rows} == {1}
    seen = tokens_a + tokens_b
    assert set(seen) == seeded.tokens  # none lost
    assert max(seen.values()) == 1  # none twice, by the same worker or by both
    assert tokens_a and tokens_b, "both workers should have delivered"
    released = [
        sum(int(count) for count in RELEASED_LINE.findall(worker.log_text())) for worker in workers
    ]
    assert sum(released) == NOTIFICATIONS  # no notification released twice
    for worker in workers:  # a long release skips poll ticks by design, without a warning each
        assert "maximum number of running instances" not in worker.log_text()
    print(
        f"\nscale-out: {NOTIFICATIONS} due deferred notifications, 2 workers; "
        f"released {released[0]} + {released[1]}, delivered "
        f"{sum(tokens_a.values())} + {sum(tokens_b.values())}, 0 duplicates; "
        f"all sent {drained_in:.1f}s after the workers were up ({elapsed:.1f}s from launch)"
    )
