"""APNs payload mapping: pure builders, and what actually reaches APNs for each tier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.providers.apns import (
    APNS_MAX_PAYLOAD_BYTES,
    ApnsProvider,
    apns_payload_size,
    build_apns_payload,
    encode_apns_payload,
)
from gateway.providers.base import AppProfile
from gateway.simulators.apns import ApnsSimulator
from policies.tiers import Tier
from tests.providers.apns_fixtures import (  # noqa: F401 -- fixtures register by import
    TOPIC,
    apns_provider_fixture,
    apns_sim_fixture,
    app_for,
    make_message,
)
from tokens.reports import Outcome

PLAIN_APP = AppProfile(id="shop")
TIME_SENSITIVE_APP = AppProfile(id="bank", time_sensitive=True)


def test_alert_fields_go_into_aps_and_data_beside_it() -> None:
    message = make_message(
        title="Payment received",
        body="$12.00 from Ana",
        data={"payment_id": "p_1", "nested": {"a": [1, 2]}},
        badge=3,
        sound="chime.caf",
        thread_id="payments",
    )

    assert build_apns_payload(message, PLAIN_APP) == {
        "payment_id": "p_1",
        "nested": {"a": [1, 2]},
        "aps": {
            "alert": {"title": "Payment received", "body": "$12.00 from Ana"},
            "badge": 3,
            "sound": "chime.caf",
            "thread-id": "payments",
            "interruption-level": "active",
        },
    }


@pytest.mark.parametrize(
    ("tier", "app", "level"),
    [
        (Tier.TRANSACTIONAL, TIME_SENSITIVE_APP, "time-sensitive"),
        (Tier.TRANSACTIONAL, PLAIN_APP, "active"),
        (Tier.BEHAVIORAL, TIME_SENSITIVE_APP, "active"),
        (Tier.PROMOTIONAL, TIME_SENSITIVE_APP, "passive"),
    ],
)
def test_interruption_level_follows_the_tier(tier: Tier, app: AppProfile, level: str) -> None:
    payload = build_apns_payload(make_message(tier=tier), app)

    assert payload["aps"]["interruption-level"] == level


def test_data_only_is_a_silent_background_push() -> None:
    message = make_message(title=None, body=None, data={"sync": "inbox"}, badge=2, sound="x")

    assert build_apns_payload(message, PLAIN_APP) == {
        "sync": "inbox",
        "aps": {"content-available": 1},
    }


def test_a_title_alone_or_a_body_alone_is_an_alert() -> None:
    assert build_apns_payload(make_message(body=None), PLAIN_APP)["aps"]["alert"] == {
        "title": "Your order shipped"
    }
    assert build_apns_payload(make_message(title=None), PLAIN_APP)["aps"]["alert"] == {
        "body": "It arrives Tuesday"
    }


def test_data_may_not_take_the_reserved_aps_key() -> None:
    with pytest.raises(ValueError, match="aps"):
        build_apns_payload(make_message(data={"aps": {}}), PLAIN_APP)


def test_payload_size_counts_the_bytes_sent() -> None:
    payload = build_apns_payload(make_message(title="é" * 10, body=None), PLAIN_APP)

    assert apns_payload_size(payload) == len(encode_apns_payload(payload))
    assert (
        apns_payload_size(payload)
        == len('{"aps":{"alert":{"title":"' + "é" * 10 + '"},"interruption-level":"active"}}') + 10
    )  # two UTF-8 bytes per é
    assert APNS_MAX_PAYLOAD_BYTES == 4096


@pytest.mark.parametrize(
    ("tier", "time_sensitive", "priority", "level"),
    [
        (Tier.TRANSACTIONAL, True, "10", "time-sensitive"),
        (Tier.TRANSACTIONAL, False, "10", "active"),
        (Tier.BEHAVIORAL, True, "10", "active"),
        (Tier.PROMOTIONAL, True, "5", "passive"),
    ],
)
async def test_each_tier_reaches_apns_with_its_priority_and_level(
    apns_sim: ApnsSimulator, tier: Tier, time_sensitive: bool, priority: str, level: str
) -> None:
    provider = app_for(apns_sim, time_sensitive=time_sensitive).provider()
    expires_at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    try:
        [report] = await provider.send(
            [make_message(tier=tier, expires_at=expires_at, collapse_key="order-42")]
        )
    finally:
        await provider.close()

    assert report.outcome is Outcome.SENT
    [request] = apns_sim.requests
    assert request.headers["apns-priority"] == priority
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-topic"] == TOPIC
    assert request.headers["apns-expiration"] == str(int(expires_at.timestamp()))
    assert request.headers["apns-collapse-id"] == "order-42"
    assert request.payload is not None
    assert request.payload["aps"]["interruption-level"] == level
    assert request.payload["aps"]["alert"] == {
        "title": "Your order shipped",
        "body": "It arrives Tuesday",
    }


async def test_data_only_reaches_apns_as_background_priority_5(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    message = make_message(
        tier=Tier.TRANSACTIONAL,
        title=None,
        body=None,
        data={"sync": "inbox"},
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )

    [report] = await apns_provider.send([message])

    assert report.outcome is Outcome.SENT
    [request] = apns_sim.requests
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert "apns-collapse-id" not in request.headers
    assert request.payload == {"sync": "inbox", "aps": {"content-available": 1}}
