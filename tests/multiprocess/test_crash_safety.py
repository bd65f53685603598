"""A gateway process killed with SIGKILL while delivering loses nothing, and after a
restart only what it held in flight (leased, unanswered or unrecorded) may be sent twice.

On SQLite one process owns delivery, so the same process is restarted; on PostgreSQL the same
proof holds for the process that takes the work over. Replies from the simulator are slowed so
the kill always lands while a batch is on the wire.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import DatabaseConfig
from gateway.db import create_engine, upgrade_database
from gateway.delivery.worker import ROUNDS_IN_FLIGHT
from gateway.models import DeliveryStatus, NotificationStatus
from gateway.simulators.apns import ApnsReply, ApnsSimulator
from tests.conftest import drop_postgres_schema, make_postgres_schema_url, require_postgres
from tests.multiprocess.conftest import GatewayFactory
from tests.multiprocess.harness import (
    TOPIC,
    all_final,
    delivery_rows,
    notification_status_counts,
    seed_due_deferred,
    sent_delivery_count,
    wait_until,
    write_config,
)

NOTIFICATIONS = 240
BATCH = 20  # deliveries claimed per round; a worker has ROUNDS_IN_FLIGHT rounds out at once
REPLY_DELAY_SECONDS = 0.4


async def test_sigkill_mid_delivery_repeats_only_what_was_in_flight(
    engine: AsyncEngine,
    database_url: str,
    apns: ApnsSimulator,
    gateways: GatewayFactory,
    tmp_path: Path,
) -> None:
    seeded = await seed_due_deferred(engine, count=NOTIFICATIONS, now=datetime.now(UTC))
    apns.script(ApnsReply(delay=REPLY_DELAY_SECONDS))
    config = write_config(
        tmp_path / "pushgate.toml",
        database_url=database_url,
        apns=apns.apns_config(TOPIC),
        delivery={
            "lease_seconds": 5,
            "poll_interval_seconds": 0.2,
            "release_batch_size": BATCH,
        },
    )
    gateway = gateways(config, "gateway", args=["--worker-only"])
    await gateway.start()

    async def delivering_with_a_batch_on_the_wire() -> bool:
        sent = await sent_delivery_count(engine)
        return sent >= NOTIFICATIONS // 4 and len(apns.requests) > sent

    await wait_until(delivering_with_a_batch_on_the_wire, within_seconds=60, what="mid-delivery")
    await gateway.kill()

    # The journal as the killed process left it: what it held is still leased to it.
    seen_before_kill = {request.token for request in apns.requests}
    rows = await delivery_rows(engine)
    sent_before_kill = {row.token for row in rows if row.status == DeliveryStatus.SENT}
    in_flight = {
        row.token
        for row in rows
        if row.status == DeliveryStatus.PENDING and row.lease_owner is not None
    }
    assert in_flight, "the kill should have caught a claimed batch"
    assert len(in_flight) <= ROUNDS_IN_FLIGHT * BATCH  # the most a kill can catch in flight
    # whatever reached APNs without its answer being recorded was held under a lease
    assert seen_before_kill - sent_before_kill <= in_flight
    on_the_wire = (seen_before_kill - sent_before_kill) & in_flight
    assert on_the_wire, "the kill should have landed while requests were unanswered"

    apns.clear_script()
    await gateway.restart()
    drained_in = await wait_until(
        lambda: all_final(engine, NOTIFICATIONS), within_seconds=90, what="every notification final"
    )
    await gateway.stop()

    assert await notification_status_counts(engine) == {NotificationStatus.SENT: NOTIFICATIONS}
    final_rows = await delivery_rows(engine)
    assert {row.status for row in final_rows} == {DeliveryStatus.SENT}
    assert len(final_rows) == NOTIFICATIONS
    requests_per_token = Counter(request.token for request in apns.requests)
    assert set(requests_per_token) == seeded.tokens  # none lost
    duplicated = {token for token, count in requests_per_token.items() if count > 1}
    assert duplicated <= in_flight
    assert max(requests_per_token.values()) <= 2
    print(
        f"\ncrash safety ({engine.dialect.name}): {NOTIFICATIONS} notifications, "
        f"{len(sent_before_kill)} sent before SIGKILL, {len(in_flight)} leased in flight "
        f"({len(on_the_wire)} already at APNs), {len(duplicated)} duplicates at APNs, "
        f"restart drained the rest in {drained_in:.1f}s"
    )


@pytest.mark.postgres
async def test_surviving_worker_takes_over_a_killed_workers_leases_on_postgresql(
    apns: ApnsSimulator, gateways: GatewayFactory, tmp_path: Path
) -> None:
    """With two workers on PostgreSQL: one is killed mid-delivery and never comes
    back; the other takes its leased work over once the lease runs out."""
    await require_postgres()
    url, schema = await make_postgres_schema_url()
    engine = create_engine(DatabaseConfig(url=url))
    try:
        await upgrade_database(engine)
        seeded = await seed_due_deferred(engine, count=NOTIFICATIONS, now=datetime.now(UTC))
        apns.script(ApnsReply(delay=REPLY_DELAY_SECONDS))
        config = write_config(
            tmp_path / "pushgate.toml",
            database_url=url,
            apns=apns.apns_config(TOPIC),
            delivery={
                "lease_seconds": 5,
                "poll_interval_seconds": 0.2,
                "release_batch_size": BATCH,
            },
        )
        victim = gateways(config, "victim", args=["--worker-only"])
        survivor = gateways(config, "survivor", args=["--worker-only"])
        await victim.start()
        await survivor.start()
        victim_owner = victim.worker_owner()

        async def victim_holds_a_batch_on_the_wire() -> bool:
            rows = await delivery_rows(engine)
            held = {row.token for row in rows if row.lease_owner == victim_owner}
            sent = sum(row.status == DeliveryStatus.SENT for row in rows)
            seen = {request.token for request in apns.requests}
            return sent >= NOTIFICATIONS // 4 and bool(held & seen)

        await wait_until(
            victim_holds_a_batch_on_the_wire, within_seconds=60, what="victim mid-delivery"
        )
        await victim.kill()
        rows = await delivery_rows(engine)
        in_flight = {
            row.token
            for row in rows
            if row.status == DeliveryStatus.PENDING and row.lease_owner == victim_owner
        }
        assert in_flight
        apns.clear_script()
        drained_in = await wait_until(
            lambda: all_final(engine, NOTIFICATIONS),
            within_seconds=90,
            what="every notification final",
        )
        await survivor.stop()

        assert await notification_status_counts(engine) == {NotificationStatus.SENT: NOTIFICATIONS}
        requests_per_token = Counter(request.token for request in apns.requests)
        assert set(requests_per_token) == seeded.tokens
        duplicated = {token for token, count in requests_per_token.items() if count > 1}
        assert duplicated <= in_flight
        assert max(requests_per_token.values()) <= 2
        print(
            f"\ntakeover (postgresql): {NOTIFICATIONS} notifications, {len(in_flight)} leased "
            f"by the killed worker, {len(duplicated)} duplicates at APNs, the survivor "
            f"finished in {drained_in:.1f}s"
        )
    finally:
        await engine.dispose()
        await drop_postgres_schema(schema)
