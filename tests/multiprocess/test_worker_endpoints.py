"""A real ``pushgate serve --worker-only`` process listens on its own port for ``/healthz``,
``/readyz`` and ``/metrics`` (and nothing else), its metrics count the deliveries it made, and
its JSON log holds one event per release decision and per delivery outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.simulators.apns import ApnsSimulator
from tests.api.conftest import sha
from tests.multiprocess.conftest import GatewayFactory
from tests.multiprocess.harness import (
    APP_ID,
    TOPIC,
    all_final,
    seed_due_deferred,
    wait_until,
    write_config,
)

METRICS_KEY = "worker-scrape-key"
NOTIFICATIONS = 3
KEYS = f"""
[logging]
format = "json"

[[api_keys]]
name = "scraper"
key_sha256 = "{sha(METRICS_KEY)}"
allowed_tiers = ["transactional"]
scopes = ["metrics"]
"""


def json_events(log_text: str) -> list[dict[str, Any]]:
    """Every line of a JSON log, parsed (a line that is not JSON fails the test)."""
    return [json.loads(line) for line in log_text.splitlines() if line.strip()]


def sample_value(exposition: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def test_worker_serves_health_readiness_and_its_delivery_metrics(
    engine: AsyncEngine,
    database_url: str,
    apns: ApnsSimulator,
    gateways: GatewayFactory,
    tmp_path: Path,
) -> None:
    seeded = await seed_due_deferred(engine, count=NOTIFICATIONS, now=datetime.now(UTC))
    config = write_config(
        tmp_path / "pushgate.toml",
        database_url=database_url,
        apns=apns.apns_config(TOPIC),
        delivery={"poll_interval_seconds": 0.2},
        extra=KEYS,
    )
    worker = gateways(config, "worker", args=["--worker-only"])
    await worker.start()
    await wait_until(
        lambda: all_final(engine, NOTIFICATIONS), within_seconds=60, what="every delivery sent"
    )
    url = worker.http_url()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        async with http.get(f"{url}/readyz", headers={"X-Request-Id": "probe-1"}) as response:
            assert response.status == 200
            assert response.headers["X-Request-Id"] == "probe-1"
            assert await response.json() == {
                "status": "ready",
                "database": "reachable",
                "delivery_worker": "running",
                "scheduler": "running",
            }
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 401  # the same key and scope as on the API
        scrape = {"Authorization": f"Bearer {METRICS_KEY}"}
        # the worker serves nothing of the API
        async with http.post(f"{url}/v1/notifications", json={}, headers=scrape) as response:
            assert response.status == 404
        async with http.get(f"{url}/openapi.json", headers=scrape) as response:
            assert response.status == 404
        async with http.get(f"{url}/metrics", headers=scrape) as response:
            assert response.status == 200
            text = await response.text()
    await worker.stop()

    provider = {"provider": "apns", "app": APP_ID}
    assert sample_value(text, "pushgate_deliveries_total", **provider, outcome="sent") == 3
    assert (
        sample_value(text, "pushgate_provider_responses_total", **provider, status="200", reason="")
        == NOTIFICATIONS
    )
    latency_count = "pushgate_provider_send_duration_seconds_count"
    assert sample_value(text, latency_count, **provider) == NOTIFICATIONS
    assert sample_value(text, "pushgate_provider_requests_in_flight", **provider) == 0
    assert sample_value(text, "pushgate_breaker_open", **provider) == 0

    events = json_events(worker.log_text())
    assert all(event["level"] in ("debug", "info", "warning", "error") for event in events)
    released = [event for event in events if event.get("event") == "notification.released"]
    assert {event["notification_id"] for event in released} == set(seeded.token_by_notification)
    for event in released:
        assert (event["decision"], event["status"], event["reason"]) == ("send", "queued", None)
        assert event["logger"] == "gateway.services.release"
    outcomes = [event for event in events if event.get("event") == "delivery.outcome"]
    assert len(outcomes) == NOTIFICATIONS
    for event in outcomes:
        token = seeded.token_by_notification[event["notification_id"]]
        assert event["token"] == f"…{token[-6:]}"
        assert event["provider"] == "apns" and event["status"] == "sent"
        assert event["provider_status"] == 200 and event["attempt"] == 1
        assert event["provider_id"]  # the apns-id
        assert event["latency_ms"] > 0
    log_text = worker.log_text()
    for token in seeded.tokens:
        assert token not in log_text  # never a whole token
    assert "Your order shipped" not in log_text  # nor a title
