"""The worker's drain (what ``DeliveryWorker.run`` does while work waits): rounds overlap, the
next claimed and sent while the previous is still out, and ``concurrency_per_app`` still holds
over both, as a sliding window rather than chunk by chunk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.simulators.apns import ApnsReply, ApnsSimulator
from tests.pipeline.conftest import APP, Pipeline, StartPipeline


class PeakInFlight:
    """The most requests the APNs simulator held at once, over all its connections."""

    def __init__(self, apns: ApnsSimulator) -> None:
        self.peak = 0
        answer = apns._answer

        def counting(*args: Any) -> ApnsReply:
            in_flight = sum(len(connection.in_flight) for connection in apns._connections)
            self.peak = max(self.peak, in_flight)
            return answer(*args)

        apns._answer = counting  # type: ignore[method-assign]


async def queue_notifications(pipeline: Pipeline, users: int) -> list[str]:
    ids = []
    for index in range(users):
        await pipeline.register(user_id=f"u{index}")
        ids.append((await pipeline.send(user_id=f"u{index}", tier="transactional"))["id"])
    return ids


async def test_drain_overlaps_rounds_within_the_concurrency_limit(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = await start_pipeline(concurrency_per_app=3)
    pipeline.worker.batch_size = 4  # 10 notifications: rounds of 4, 4 and 2
    # each answer takes a while, so sends pile up against the limit
    pipeline.apns.script(ApnsReply(delay=0.02))
    peak = PeakInFlight(pipeline.apns)
    ids = await queue_notifications(pipeline, 10)

    result = await pipeline.worker.drain()

    assert (result.claimed, result.finished_notifications) == (10, 10)
    assert len(pipeline.apns.requests) == 10
    assert peak.peak == 3  # the window was full, and never more than full
    for notification_id in ids:
        assert (await pipeline.notification(notification_id))["status"] == "sent"


async def test_a_failing_round_does_not_lose_the_other(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = await start_pipeline()
    pipeline.worker.batch_size = 2
    ids = await queue_notifications(pipeline, 4)
    real = pipeline.worker.deliver_claimed
    calls = 0

    async def first_round_breaks(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0)
            raise RuntimeError("this round breaks")
        return await real(*args)

    pipeline.worker.deliver_claimed = first_round_breaks  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="this round breaks"):  # run() logs it and goes on
        await pipeline.worker.drain()

    statuses = [(await pipeline.notification(i))["status"] for i in ids]
    assert statuses.count("sent") == 2  # the other round was seen through
    assert statuses.count("queued") == 2  # leased, left for the lease to run out: not lost


async def test_a_round_does_not_send_once_the_other_round_opened_the_breaker(
    start_pipeline: StartPipeline,
) -> None:
    # threshold 3; rounds of 4 through a window of 2: the first round's four failures open
    # the breaker while the second round's sends still wait for the window
    pipeline = await start_pipeline(concurrency_per_app=2)
    pipeline.worker.batch_size = 4
    pipeline.apns.script(ApnsReply(503, "ServiceUnavailable", delay=0.1))
    ids = await queue_notifications(pipeline, 8)

    result = await pipeline.worker.drain()

    breaker = pipeline.worker.breakers[(APP, "ios")]
    assert breaker.is_open(pipeline.clock.now)
    sent = len(pipeline.apns.requests)
    assert sent < 8  # what was still waiting for the window when it opened did not go out
    assert result.waiting_on_breaker == 8 - sent
    deliveries = [(await pipeline.notification(i))["deliveries"][0] for i in ids]
    # held back by the open breaker: not attempted, so no attempt used up
    assert sorted(d["attempts"] for d in deliveries) == [0] * (8 - sent) + [1] * sent
    assert {d["status"] for d in deliveries} == {"pending"}


async def test_a_round_that_outlives_its_lease_is_not_claimed_again_by_its_own_worker(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = await start_pipeline(lease_seconds=60)
    pipeline.worker.batch_size = 2
    pipeline.apns.script(ApnsReply(delay=0.3))  # the round is still out while the test looks
    await queue_notifications(pipeline, 2)
    draining = asyncio.create_task(pipeline.worker.drain())
    await pipeline.apns.wait_for_requests(2)

    pipeline.clock.advance(seconds=61)  # the round's lease ran out while it was sending
    assert await pipeline.worker.claim(pipeline.clock()) == []

    result = await draining
    assert result.finished_notifications == 2
    assert len(pipeline.apns.requests) == 2  # each sent once
