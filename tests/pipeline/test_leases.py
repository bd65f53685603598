"""Lease safety in one process: a worker that stalls past its lease loses the work to
another worker, and its late result is discarded instead of overwriting the other's."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.delivery.worker import ProviderLookup
from gateway.providers.base import Platform, Provider, PushMessage
from tests.pipeline.conftest import Pipeline
from tokens.reports import DeliveryReport, Outcome

BOUND_SECONDS = 30  # a hang, not a timing assertion: the test waits on events, not on time


class StallingProviders:
    """The real providers, except that each send waits until the test lets it through."""

    def __init__(self, providers: ProviderLookup) -> None:
        self.providers = providers
        self.sending = asyncio.Event()
        self.resume = asyncio.Event()

    def __call__(self, app: str, platform: Platform) -> Provider:
        inner, outer = self.providers(app, platform), self

        class Stalling:
            async def send(self, messages: Sequence[PushMessage]) -> list[DeliveryReport]:
                outer.sending.set()
                await outer.resume.wait()
                return await inner.send(messages)

            async def close(self) -> None:
                return None

        return Stalling()


async def test_lease_run_out_is_taken_over_and_the_late_result_discarded(
    pipeline: Pipeline,
) -> None:
    await pipeline.register(platform="android")
    notification = await pipeline.send(tier="transactional")
    stalling = StallingProviders(pipeline.providers)
    worker_a = pipeline.new_worker("worker-a-stalls", providers=stalling)
    worker_b = pipeline.new_worker("worker-b")

    round_a = asyncio.create_task(worker_a.run_round())
    await asyncio.wait_for(stalling.sending.wait(), BOUND_SECONDS)

    # Within the lease nobody else may take it, not even a reclaim.
    pipeline.clock.advance(seconds=pipeline.settings.delivery.lease_seconds - 1)
    assert (await pipeline.deliver(worker_b)).claimed == 0
    assert await pipeline.jobs.reclaim() == 0

    pipeline.clock.advance(seconds=2)
    assert await pipeline.jobs.reclaim() == 1
    taken_over = await pipeline.deliver(worker_b)
    assert taken_over.outcomes == {Outcome.SENT: 1}
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    [delivery] = body["deliveries"]
    b_message_name = delivery["provider_id"]
    assert b_message_name.startswith("projects/")

    # A wakes up, sends (the one duplicate a lease allows: it was in flight) and reports late.
    stalling.resume.set()
    late = await asyncio.wait_for(round_a, BOUND_SECONDS)
    # its result is dropped: not written, not counted in metrics, breaker or guard
    assert late.outcomes == {} and late.finished_notifications == 0
    assert len(pipeline.fcm.delivered) == 2

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 1)
    assert delivery["provider_id"] == b_message_name  # B's result stands


async def test_a_late_retry_does_not_reopen_a_finished_delivery(pipeline: Pipeline) -> None:
    """A's late transient failure must not put B's sent delivery back in the queue."""
    await pipeline.register()
    notification = await pipeline.send(tier="transactional")
    worker_a = pipeline.new_worker("worker-a")
    claimed = await worker_a.claim(pipeline.clock.now)
    assert len(claimed) == 1

    pipeline.clock.advance(seconds=pipeline.settings.delivery.lease_seconds + 1)
    assert (await pipeline.deliver(pipeline.new_worker("worker-b"))).outcomes == {Outcome.SENT: 1}
    retry = DeliveryReport(Outcome.RETRY, reason="ServiceUnavailable", status=503)
    recorded = await worker_a.record_reports(claimed, [retry], pipeline.clock.now)
    assert (recorded.results, recorded.finished) == ([], [])

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["attempts"], delivery["error"]) == ("sent", 1, None)
    assert await pipeline.pending_deliveries() == 0
