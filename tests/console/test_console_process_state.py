"""What only a delivering process knows: its circuit breakers and its mass-invalidation guard,
shown plainly on the console (both databases)."""

from __future__ import annotations

from bench.console_traffic import seed_known_traffic
from gateway.delivery.worker import CircuitBreaker
from gateway.runtime import Runtime
from tests.api.conftest import FakeClock
from tests.console.conftest import Client, cell, page, sign_in
from tokens.reports import DeliveryReport, Outcome


async def test_a_tripped_guard_and_an_open_breaker_are_shown(
    delivering_console: tuple[Client, Runtime], clock: FakeClock
) -> None:
    console, runtime = delivering_console
    await seed_known_traffic(runtime.engine, runtime.services, clock())
    await sign_in(console)
    text = await page(console, "/console/tokens")
    assert "not tripped" in cell(text, 'id="guard-state"')
    text = await page(console, "/console/deliveries")
    apns_demo = text.split('<tr data-provider="APNs" data-app="demo">')[1].split("</tr>")[0]
    assert cell(apns_demo, 'data-field="breaker"') == "closed"

    worker = runtime.worker
    assert worker is not None
    guard = worker.queue.guard
    assert guard is not None
    wrong_topic = DeliveryReport(
        Outcome.TOKEN_DEAD, reason="DeviceTokenNotForTopic", status=400, misconfiguration=True
    )
    for _ in range(guard.min_sends):
        guard.record("demo", wrong_topic, clock())
    breaker = worker.breakers[("demo", "ios")] = CircuitBreaker(
        worker.config.breaker_failure_threshold, worker.config.breaker_reset_seconds
    )
    for _ in range(breaker.threshold):
        breaker.record(Outcome.RETRY, clock())

    text = await page(console, "/console/tokens")
    alarm = text.split('id="guard-tripped"')[1].split("</div>")[0]
    assert "Mass-invalidation guard tripped</strong> for demo" in alarm
    assert "<strong>not being invalidated</strong>" in alarm
    assert "for other" not in alarm
    text = await page(console, "/console/deliveries")
    apns_demo = text.split('<tr data-provider="APNs" data-app="demo">')[1].split("</tr>")[0]
    assert cell(apns_demo, 'data-field="breaker"') == "open until 12:00:30 UTC"
    fcm_demo = text.split('<tr data-provider="FCM" data-app="demo">')[1].split("</tr>")[0]
    assert cell(fcm_demo, 'data-field="breaker"') == "closed"
