"""The log events an operator follows, in the JSON format, parsed and checked field by field:
a notification accepted, a release decision, each delivery's outcome; and the request id of the
request that created a notification, named in every one of them."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from gateway.logs import JsonFormatter, install_filters
from gateway.simulators.fcm import Fault
from tests.pipeline.conftest import APP, TOKYO, Pipeline

Events = Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def log_events(caplog: pytest.LogCaptureFixture) -> Iterator[Events]:
    """``log_events(name)``: the events called ``name`` logged so far, each line of the JSON
    handler (the one ``[logging] format = "json"`` installs) parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    install_filters(handler)
    caplog.set_level(logging.INFO)
    logging.getLogger().addHandler(handler)

    def events(name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        return [line for line in lines if line.get("event") == name]

    yield events
    logging.getLogger().removeHandler(handler)


def same_instant(one: str, other: str) -> bool:
    return datetime.fromisoformat(one) == datetime.fromisoformat(other)


def is_instant(value: object) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None


async def test_a_request_id_travels_from_the_request_to_each_delivery(
    pipeline: Pipeline, log_events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    ios = await pipeline.register()
    android = await pipeline.register(platform="android")
    response = await pipeline.client.post(
        "/v1/notifications",
        json={"user_id": "u1", "app": APP, "tier": "transactional", "title": "Shipped"},
        headers={"X-Request-Id": "checkout-42"},
    )
    assert response.status == 202
    assert response.headers["X-Request-Id"] == "checkout-42"
    notification = await response.json()
    await pipeline.deliver()

    [accepted] = log_events("notification.accepted")[-1:]
    assert accepted == {
        "time": accepted["time"],
        "level": "info",
        "logger": "gateway.services.acceptance",
        "process": os.getpid(),
        "event": "notification.accepted",
        "request_id": "checkout-42",
        "message": accepted["message"],
        "notification_id": notification["id"],
        "user_id": "u1",
        "app": APP,
        "tier": "transactional",
        "category": None,
        "status": "queued",
        "reason": None,
        "sender": "full",
        "deliver_at": accepted["deliver_at"],
        "expires_at": accepted["expires_at"],
    }
    assert is_instant(accepted["time"])
    for name in ("deliver_at", "expires_at"):  # the same instants as the API's (RFC 3339)
        assert same_instant(accepted[name], notification[name])

    body = await pipeline.notification(notification["id"])
    deliveries = {delivery["device_id"]: delivery for delivery in body["deliveries"]}
    outcomes = {event["device_id"]: event for event in log_events("delivery.outcome")}
    assert outcomes.keys() == {ios["id"], android["id"]}
    for device, provider in ((ios, "apns"), (android, "fcm")):
        event = outcomes[device["id"]]
        latency = event.pop("latency_ms")
        assert isinstance(latency, float) and latency > 0
        assert event == {
            "time": event["time"],
            "level": "info",
            "logger": "gateway.delivery.worker",
            "process": os.getpid(),
            "event": "delivery.outcome",
            "request_id": "checkout-42",
            "message": event["message"],
            "notification_id": notification["id"],
            "delivery_id": event["delivery_id"],
            "device_id": device["id"],
            "token": f"…{device['token'][-6:]}",
            "app": APP,
            "platform": device["platform"],
            "provider": provider,
            "sent": True,
            "status": "sent",
            "outcome": "sent",
            "provider_status": 200,
            "reason": None,
            # the apns-id, or the FCM message name
            "provider_id": deliveries[device["id"]]["provider_id"],
            "attempt": 1,
            "next_attempt_at": None,
        }
    assert outcomes[android["id"]]["provider_id"].startswith("projects/")
    for device in (ios, android):
        assert device["token"] not in caplog.text
    assert "Shipped" not in caplog.text


async def test_a_retry_is_an_outcome_with_its_reason_and_next_attempt(
    pipeline: Pipeline, log_events: Events
) -> None:
    await pipeline.register(platform="android")
    pipeline.fcm.inject(Fault(error="UNAVAILABLE", retry_after="60"), count=1)
    notification = await pipeline.send(tier="transactional")
    await pipeline.deliver()

    [event] = log_events("delivery.outcome")
    assert event["notification_id"] == notification["id"]
    assert (event["status"], event["outcome"]) == ("pending", "retry")
    assert (event["provider_status"], event["reason"]) == (503, "UNAVAILABLE")
    assert event["provider_id"] is None and event["attempt"] == 1
    assert is_instant(event["next_attempt_at"])
    assert event["request_id"]  # made up by the gateway: the client sent none


async def test_a_deferred_notification_keeps_its_request_id_through_release(
    pipeline: Pipeline, log_events: Events
) -> None:
    ios = await pipeline.register(timezone=TOKYO)
    response = await pipeline.client.post(
        "/v1/notifications",
        json={"user_id": "u1", "app": APP, "tier": "behavioral", "body": "Your cart"},
        headers={"X-Request-Id": "night-1"},
    )
    notification = await response.json()
    assert notification["status"] == "deferred"
    [accepted] = log_events("notification.accepted")
    assert (accepted["status"], accepted["reason"]) == ("deferred", "quiet_hours")
    assert same_instant(accepted["deliver_at"], notification["deliver_at"])

    pipeline.clock.now = datetime.fromisoformat(notification["deliver_at"])
    assert await pipeline.release_and_deliver() == 1

    [released] = log_events("notification.released")
    assert released == {
        "time": released["time"],
        "level": "info",
        "logger": "gateway.services.release",
        "process": os.getpid(),
        "event": "notification.released",
        "request_id": "night-1",
        "message": released["message"],
        "notification_id": notification["id"],
        "user_id": "u1",
        "app": APP,
        "tier": "behavioral",
        "decision": "send",
        "status": "queued",
        "reason": None,
        "deliver_at": None,
    }
    [delivered] = log_events("delivery.outcome")
    assert (delivered["request_id"], delivered["device_id"]) == ("night-1", ios["id"])
    assert delivered["status"] == "sent"


async def test_a_release_that_defers_again_or_drops_says_so(
    pipeline: Pipeline, log_events: Events
) -> None:
    await pipeline.register(timezone=TOKYO)
    await pipeline.preferences(promotional=True)
    kept = await pipeline.send(tier="behavioral")
    dropped = await pipeline.send(tier="promotional")
    await pipeline.preferences(promotional=False)  # consent withdrawn overnight
    # the user moves to India, where 08:00 in Tokyo is 04:30, still the night
    await pipeline.preferences(timezone="Asia/Kolkata")
    pipeline.clock.now = max(
        datetime.fromisoformat(kept["deliver_at"]), datetime.fromisoformat(dropped["deliver_at"])
    )
    await pipeline.release_and_deliver()

    released = {event["notification_id"]: event for event in log_events("notification.released")}
    assert (released[dropped["id"]]["decision"], released[dropped["id"]]["reason"]) == (
        "drop",
        "not_opted_in",
    )
    assert released[dropped["id"]]["status"] == "dropped"
    again = released[kept["id"]]
    assert (again["decision"], again["status"], again["reason"]) == (
        "defer",
        "deferred",
        "quiet_hours",
    )
    assert is_instant(again["deliver_at"])
