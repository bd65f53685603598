"""``/metrics`` after real traffic: deliveries by provider and outcome, retries, breaker state,
queue depth and deferred notifications by release hour (issue 4 "Metrics")."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import reason_label
from gateway.simulators.apns import ApnsReply
from gateway.simulators.fcm import Fault
from tests.pipeline.conftest import APP, TOKYO, Pipeline, StartPipeline


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(exposition: str, name: str, **labels: str) -> float | None:
    return samples(exposition).get((name, frozenset(labels.items())))


async def test_metrics_after_traffic(start_pipeline: StartPipeline) -> None:
    pipeline: Pipeline = await start_pipeline(breaker_failure_threshold=2)
    await pipeline.register("ok-user")
    await pipeline.register("ok-user", platform="android")
    await pipeline.register("night-user", timezone=TOKYO)
    dead = await pipeline.register("dead-user")
    pipeline.apns.script(ApnsReply(410, "Unregistered"), token=dead["token"])
    pipeline.fcm.inject(Fault(error="UNAVAILABLE", retry_after="60"), count=1)

    await pipeline.send(user_id="ok-user", tier="transactional")
    await pipeline.send(user_id="dead-user", tier="transactional")
    deferred = await pipeline.send(user_id="night-user", tier="behavioral")
    assert deferred["status"] == "deferred"
    await pipeline.deliver()
    await pipeline.jobs.refresh_metrics()

    text = await pipeline.metrics_text()
    delivered = "pushgate_deliveries_total"
    assert value(text, delivered, provider="apns", app=APP, outcome="sent") == 1
    assert value(text, delivered, provider="apns", app=APP, outcome="token_dead") == 1
    assert value(text, delivered, provider="fcm", app=APP, outcome="retry") == 1
    assert value(text, "pushgate_delivery_retries_total", provider="fcm", app=APP) == 1
    assert value(text, "pushgate_breaker_open", provider="apns", app=APP) == 0
    assert value(text, "pushgate_breaker_open", provider="fcm", app=APP) == 0
    assert value(text, "pushgate_queue_depth") == 1  # the FCM retry
    # It is 14:00 UTC; 08:00 in Tokyo is 23:00 UTC (plus the spread): hour bucket 10 is
    # [23:00, 00:00), as bucket 1 is [now, 15:00).
    by_hour = {
        dict(labels)["release_hour"]: count
        for (name, labels), count in samples(text).items()
        if name == "pushgate_deferred_notifications"
    }
    assert by_hour["10"] == 1
    assert sum(by_hour.values()) == 1
    assert (
        value(
            text,
            "pushgate_tokens_invalidated_total",
            app=APP,
            platform="ios",
            reason="Unregistered",
        )
        == 1
    )

    # two transient failures in a row open the FCM breaker, and the gauge says so
    pipeline.fcm.inject(Fault(error="UNAVAILABLE"), count=1)
    await pipeline.send(user_id="ok-user", tier="transactional")
    await pipeline.deliver()
    text = await pipeline.metrics_text()
    assert value(text, "pushgate_breaker_open", provider="fcm", app=APP) == 1


async def test_provider_metrics_per_provider_and_app(pipeline: Pipeline) -> None:
    """Sygnal's set: a send-latency histogram, requests in flight, and a counter of the
    provider's status codes and reasons, each per provider and app."""
    await pipeline.register("ok-user")
    await pipeline.register("ok-user", platform="android")
    dead = await pipeline.register("dead-user")
    pipeline.apns.script(ApnsReply(410, "Unregistered"), token=dead["token"])
    pipeline.fcm.inject(Fault(error="UNAVAILABLE"), count=1)
    await pipeline.send(user_id="ok-user", tier="transactional")
    await pipeline.send(user_id="dead-user", tier="transactional")
    await pipeline.deliver()

    text = await pipeline.metrics_text()
    answers = "pushgate_provider_responses_total"
    apns, fcm = {"provider": "apns", "app": APP}, {"provider": "fcm", "app": APP}
    assert value(text, answers, **apns, status="200", reason="") == 1
    assert value(text, answers, **apns, status="410", reason="Unregistered") == 1
    assert value(text, answers, **fcm, status="503", reason="UNAVAILABLE") == 1
    assert value(text, "pushgate_provider_send_duration_seconds_count", **apns) == 2
    assert value(text, "pushgate_provider_send_duration_seconds_count", **fcm) == 1
    assert (value(text, "pushgate_provider_send_duration_seconds_sum", **apns) or 0) > 0
    assert value(text, "pushgate_provider_requests_in_flight", **apns) == 0
    assert value(text, "pushgate_provider_requests_in_flight", **fcm) == 0

    # the next FCM attempt succeeds: its answer is counted as a 200 too
    await pipeline.advance_to_next_attempt()
    await pipeline.deliver()
    text = await pipeline.metrics_text()
    assert value(text, answers, **fcm, status="200", reason="") == 1


def test_a_reason_label_is_the_code_without_its_detail() -> None:
    assert reason_label("configuration_error: [Errno 2] No such file: 'key.p8'") == (
        "configuration_error"
    )
    assert reason_label("BadDeviceToken") == "BadDeviceToken"
    assert reason_label(None) == ""
