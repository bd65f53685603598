"""Transient failures: retried with backoff honouring ``Retry-After`` until the
attempt limit, then ``failed`` with the provider's reason; the circuit breaker holds a failing
provider's deliveries back without using up their attempts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.delivery.providers import ProviderSet
from gateway.simulators.apns import ApnsReply
from gateway.simulators.fcm import Fault
from tests.pipeline.conftest import APP, Pipeline, StartPipeline
from tokens.reports import Outcome

NO_BREAKER = {"breaker_failure_threshold": 1000}


async def test_outage_with_retry_after_then_recovery_delivers_everything(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = await start_pipeline(**NO_BREAKER)
    for user in ("u1", "u2", "u3"):
        await pipeline.register(user)
    pipeline.apns.script(ApnsReply(503, "ServiceUnavailable", retry_after=120), times=6)
    sent = [await pipeline.send(user_id=user, tier="transactional") for user in ("u1", "u2", "u3")]

    for outage_round in range(2):
        started = pipeline.clock.now
        result = await pipeline.deliver()
        assert result.outcomes == {Outcome.RETRY: 3}, f"outage round {outage_round}"
        for notification in sent:
            # full jitter on a 1 s base stays under Retry-After: the header wins
            assert await pipeline.next_attempt_at(notification["id"]) == [
                started + timedelta(seconds=120)
            ]
        pipeline.clock.advance(seconds=119)
        assert (await pipeline.deliver()).claimed == 0  # Retry-After is honoured
        pipeline.clock.advance(seconds=1)

    result = await pipeline.deliver()
    assert result.outcomes == {Outcome.SENT: 3}
    for notification in sent:
        body = await pipeline.notification(notification["id"])
        assert body["status"] == "sent"
        [delivery] = body["deliveries"]
        assert (delivery["status"], delivery["attempts"], delivery["error"]) == ("sent", 3, None)
    assert [request.status for request in pipeline.apns.requests] == [503] * 6 + [200] * 3


async def drive_until_settled(pipeline: Pipeline, limit: int = 20) -> None:
    """Deliver, then jump the clock to the next retry, until nothing is pending."""
    for _ in range(limit):
        await pipeline.deliver()
        if not await pipeline.pending_deliveries():
            return
        await pipeline.advance_to_next_attempt()
    raise AssertionError("deliveries still pending")


async def test_attempts_exhausted_fail_with_the_provider_reason(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = await start_pipeline(**NO_BREAKER)
    device = await pipeline.register()
    pipeline.apns.script(ApnsReply(500, "InternalServerError"), token=device["token"])
    notification = await pipeline.send(tier="transactional")

    await drive_until_settled(pipeline)

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "failed"
    [delivery] = body["deliveries"]
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == pipeline.settings.delivery.max_attempts == 4
    assert delivery["error"] == "InternalServerError (attempts exhausted)"
    assert len(pipeline.apns.requests) == 4
    assert (await pipeline.devices())[device["token"]]["status"] == "active"


async def test_retries_stop_at_expiry(start_pipeline: StartPipeline) -> None:
    pipeline = await start_pipeline(**NO_BREAKER)
    await pipeline.register()
    pipeline.apns.script(ApnsReply(503, "ServiceUnavailable", retry_after=600))
    notification = await pipeline.send(tier="transactional", ttl_seconds=300)

    await drive_until_settled(pipeline)

    body = await pipeline.notification(notification["id"])
    # every delivery ran out of time: the notification says so, each delivery says why
    assert (body["status"], body["reason"]) == ("expired", "expired")
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert delivery["error"] == "ServiceUnavailable (expired)"


@pytest.mark.parametrize("retry_after", ["9" * 30, "9" * 400])
async def test_an_absurd_retry_after_ends_the_delivery_and_spares_the_others(
    start_pipeline: StartPipeline, retry_after: str
) -> None:
    """A provider asking to wait 10^30 seconds (or more than a float holds) must not break
    the recording of the results sent with it: that one ends expired, the others sent once."""
    pipeline = await start_pipeline(**NO_BREAKER)
    slow = await pipeline.register("slow")
    for user in ("a", "b", "c"):
        await pipeline.register(user)
    pipeline.apns.script(
        ApnsReply(503, "ServiceUnavailable", retry_after=retry_after), token=slow["token"]
    )
    sent = [
        await pipeline.send(user_id=user, tier="transactional") for user in ("slow", "a", "b", "c")
    ]

    await drive_until_settled(pipeline)

    bodies = [await pipeline.notification(notification["id"]) for notification in sent]
    assert [body["status"] for body in bodies] == ["expired", "sent", "sent", "sent"]
    assert bodies[0]["deliveries"][0]["error"] == "ServiceUnavailable (expired)"
    assert len(pipeline.apns.requests) == 4  # nothing sent twice


async def test_too_many_requests_is_retried_on_both_providers(pipeline: Pipeline) -> None:
    await pipeline.register()
    await pipeline.register(platform="android")
    pipeline.apns.script(ApnsReply(429, "TooManyRequests"), times=1)
    pipeline.fcm.inject(Fault(error="QUOTA_EXCEEDED", retry_after="30"), count=1)
    notification = await pipeline.send(tier="transactional")

    started = pipeline.clock.now
    result = await pipeline.deliver()
    assert result.outcomes == {Outcome.RETRY: 2}
    retries = sorted(await pipeline.next_attempt_at(notification["id"]))
    assert retries[0] <= started + timedelta(seconds=1)  # APNs: backoff only
    assert retries[1] == started + timedelta(seconds=30)  # FCM: its Retry-After

    pipeline.clock.advance(seconds=30)
    assert (await pipeline.deliver()).outcomes == {Outcome.SENT: 2}
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    assert {(d["status"], d["attempts"]) for d in body["deliveries"]} == {("sent", 2)}
    assert {d["status"] for d in (await pipeline.devices()).values()} == {"active"}


async def test_timeouts_are_retried(pipeline: Pipeline) -> None:
    await pipeline.register()
    await pipeline.register(platform="android")
    # The simulators hold these answers far past the deadline; they are released at teardown.
    pipeline.apns.script(ApnsReply(delay=60), times=1)
    pipeline.fcm.inject(Fault(delay=60), count=1)
    notification = await pipeline.send(tier="transactional")

    impatient = pipeline.settings.delivery.model_copy(update={"send_timeout_seconds": 0.5})
    patient = pipeline.worker.providers
    impatient_providers = ProviderSet(pipeline.settings.apps, impatient)
    pipeline.worker.providers = impatient_providers
    try:
        result = await pipeline.deliver()
    finally:
        await impatient_providers.close()
        pipeline.worker.providers = patient
    assert result.outcomes == {Outcome.RETRY: 2}
    body = await pipeline.notification(notification["id"])
    assert {(d["status"], d["error"]) for d in body["deliveries"]} == {("pending", "timeout")}

    await pipeline.advance_to_next_attempt()
    pipeline.clock.advance(seconds=1)
    assert (await pipeline.deliver()).outcomes == {Outcome.SENT: 2}
    assert (await pipeline.notification(notification["id"]))["status"] == "sent"


async def test_breaker_opens_holds_deliveries_without_using_attempts_then_closes(
    pipeline: Pipeline,
) -> None:
    threshold = pipeline.settings.delivery.breaker_failure_threshold
    for _ in range(threshold):
        await pipeline.register()
    pipeline.apns.script(ApnsReply(503, "ServiceUnavailable"), times=threshold)
    notification = await pipeline.send(tier="transactional")

    opened_at = pipeline.clock.now
    assert (await pipeline.deliver()).outcomes == {Outcome.RETRY: threshold}
    breaker = pipeline.worker.breakers[(APP, "ios")]
    reopen = opened_at + timedelta(seconds=pipeline.settings.delivery.breaker_reset_seconds)
    assert breaker.open_until == reopen

    # The retries fall due while the breaker is open: they wait for it, attempts untouched.
    pipeline.clock.now = reopen - timedelta(seconds=1)  # first-attempt backoff is under 1 s
    result = await pipeline.deliver()
    assert result.waiting_on_breaker == threshold and not result.outcomes
    assert await pipeline.next_attempt_at(notification["id"]) == [reopen] * threshold
    body = await pipeline.notification(notification["id"])
    assert {(d["status"], d["attempts"]) for d in body["deliveries"]} == {("pending", 1)}
    assert len(pipeline.apns.requests) == threshold

    pipeline.clock.now = reopen
    assert (await pipeline.deliver()).outcomes == {Outcome.SENT: threshold}
    assert not breaker.is_open(pipeline.clock.now) and breaker.failures == 0
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    assert {(d["status"], d["attempts"]) for d in body["deliveries"]} == {("sent", 2)}
