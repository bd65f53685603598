"""SPEC §4 payload mapping: pure builders, and what actually reaches APNs for each tier."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta

import h2.utilities
import pytest
from aioapns.connection import AuthorizationHeaderProvider
from hpack import NeverIndexedHeaderTuple

from gateway.config import AppConfig
from gateway.providers.apns import (
    APNS_MAX_PAYLOAD_BYTES,
    ApnsProvider,
    _ApnsConnectionPool,
    _HardenedConnection,
    apns_payload_size,
    build_apns_payload,
    build_apns_request,
    encode_apns_payload,
)
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

PLAIN_APP = AppConfig(id="shop")
TIME_SENSITIVE_APP = AppConfig(id="bank", time_sensitive=True)


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
def test_interruption_level_follows_the_tier(tier: Tier, app: AppConfig, level: str) -> None:
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
    provider = ApnsProvider(app_for(apns_sim, time_sensitive=time_sensitive))
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


class _StaticBearer(AuthorizationHeaderProvider):
    def get_header(self) -> str:
        return "bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"


async def test_request_headers_are_what_h2_would_normalise_and_validate_them_to() -> None:
    """The connection turns off h2's outbound normalisation and validation (a tenth of a
    send's CPU): its header list, with every optional header, must come out of both unchanged,
    the credential never indexed."""
    authority = "api.push.apple.com"
    pool = _ApnsConnectionPool(
        topic=TOPIC,
        host="127.0.0.1",
        port=443,
        authority=authority,
        ssl_context=ssl.create_default_context(),
        auth_provider=None,
        max_connections=1,
    )
    connection = _HardenedConnection(
        f" {TOPIC}\t", authority, asyncio.get_running_loop(), _StaticBearer(), pool
    )
    message = make_message(collapse_key=" order-42 ")
    request = build_apns_request(message, PLAIN_APP)
    headers = h2.utilities.utf8_encode_headers(connection._headers(request))
    flags = h2.utilities.HeaderValidationFlags(
        is_client=True, is_trailer=False, is_response_header=False, is_push_promise=False
    )

    normalized = h2.utilities.normalize_outbound_headers(headers, flags)
    validated = list(h2.utilities.validate_outbound_headers(normalized, flags))

    assert validated == headers
    assert [type(header) for header in validated] == [type(header) for header in headers]
    sent = dict(headers)
    assert sent[b":path"] == f"/3/device/{message.token}".encode()
    assert (sent[b"apns-topic"], sent[b"apns-collapse-id"]) == (TOPIC.encode(), b"order-42")
    assert isinstance(headers[-1], NeverIndexedHeaderTuple)
    assert headers[-1][0] == b"authorization"
