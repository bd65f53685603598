"""SPEC §8: a gateway process killed with SIGKILL while delivering loses nothing, and after a
restart only what it held in flight (leased, unanswered or unrecorded) may be sent twice.

On SQLite one process owns delivery, so the same process is restarted; on PostgreSQL the same
proof holds for the process that takes the work over. Replies from the simulator are slowed so
the kill always lands while a batch is on the wire.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.models import DeliveryStatus, NotificationStatus
from gateway.simulators.apns import ApnsReply, ApnsSimulator
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
BATCH = 20  # deliveries claimed per round: the most a kill can catch in flight
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
    assert len(in_flight) <= BATCH
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
