"""FCM payload mapping: what build_fcm_message builds, and what reaches FCM on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.providers.base import AppProfile
from gateway.providers.fcm import FcmProvider, build_fcm_message
from gateway.simulators.fcm import FcmSimulator
from policies.tiers import Tier
from tests.providers.fcm_fixtures import (  # noqa: F401 -- fixtures register by import
    APP_ID,
    CHANNELS,
    fcm_app_fixture,
    fcm_provider_fixture,
    fcm_sim_fixture,
    make_message,
)
from tokens.reports import Outcome

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
APP = AppProfile(id=APP_ID, channels=CHANNELS)


@pytest.mark.parametrize(
    ("tier", "priority", "channel"),
    [
        (Tier.TRANSACTIONAL, "high", "orders"),
        (Tier.BEHAVIORAL, "normal", None),  # no channel configured for behavioral
        (Tier.PROMOTIONAL, "normal", "offers"),
    ],
)
async def test_each_tier_on_the_wire(
    fcm_sim: FcmSimulator,
    fcm_provider: FcmProvider,
    tier: Tier,
    priority: str,
    channel: str | None,
) -> None:
    message = make_message(
        tier=tier,
        title="Hello",
        body="World",
        collapse_key="order-42",
        sound="default",
        badge=3,
        expires_at=datetime.now(UTC) + timedelta(hours=2),
    )

    [report] = await fcm_provider.send([message])

    assert report.outcome is Outcome.SENT
    [sent] = fcm_sim.delivered
    assert sent["token"] == message.token
    assert sent["notification"] == {"title": "Hello", "body": "World"}
    android = sent["android"]
    assert android["priority"] == priority
    assert android["collapse_key"] == "order-42"
    expected_notification: dict[str, Any] = {"sound": "default", "notification_count": 3}
    if channel is not None:
        expected_notification["channel_id"] = channel
    assert android["notification"] == expected_notification
    ttl = int(android["ttl"].removesuffix("s"))
    assert 7000 < ttl <= 7200  # two hours, less the moments the test took
    # The simulator saw firebase-admin's headers and our bearer token.
    assert fcm_sim.sends[0].headers["Authorization"].startswith("Bearer ya29.sim-")


async def test_a_data_only_message_on_the_wire(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    message = make_message(
        tier=Tier.BEHAVIORAL,
        title=None,
        body=None,
        badge=5,
        data={"order_id": "42", "count": 3, "tags": ["a", "b"], "nested": {"x": None}},
    )

    await fcm_provider.send([message])

    [sent] = fcm_sim.delivered
    assert "notification" not in sent
    assert "notification" not in sent["android"]  # badge and channel belong to notifications
    assert sent["android"]["priority"] == "normal"
    assert sent["data"] == {
        "order_id": "42",
        "count": "3",
        "tags": '["a","b"]',
        "nested": '{"x":null}',
    }


def test_ttl_is_the_time_left_clamped_to_fcm_limits() -> None:
    def ttl(expires_in: timedelta) -> Any:
        return build_fcm_message(make_message(expires_at=NOW + expires_in), APP, NOW).android.ttl

    assert ttl(timedelta(seconds=90, milliseconds=700)) == 90  # whole seconds
    assert ttl(timedelta(days=60)) == 28 * 24 * 3600  # FCM's four-week maximum
    assert ttl(timedelta(seconds=-5)) == 0  # never negative


def test_title_only_and_optional_fields_left_out() -> None:
    message = build_fcm_message(make_message(body=None, tier=Tier.BEHAVIORAL), APP, NOW)

    assert (message.notification.title, message.notification.body) == ("Your order shipped", None)
    assert message.android.collapse_key is None
    assert message.android.notification.channel_id is None
    assert message.android.notification.notification_count is None
    assert message.data is None


def test_the_builder_raises_no_deprecation_warning_for_registration_tokens() -> None:
    # firebase-admin 7.7 deprecates Message.token; warnings are errors in this suite.
    message = build_fcm_message(make_message("tok:APA91bXYZ"), APP, NOW)

    assert message.token == "tok:APA91bXYZ"
