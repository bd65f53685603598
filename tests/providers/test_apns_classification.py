"""Every row of ApnsProvider.OUTCOMES, driven through real aioapns connections to the simulator."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.providers.apns import ApnsConfig, ApnsProvider
from gateway.providers.base import AppProfile
from gateway.simulators.apns import ApnsReply, ApnsSimulator
from tests.providers.apns_fixtures import (  # noqa: F401 -- fixtures register by import
    apns_provider_fixture,
    apns_sim_fixture,
    app_for,
    make_message,
)
from tokens.reports import Outcome

ROWS = [
    # (reply, outcome, reason)
    (ApnsReply(410, "ExpiredToken"), Outcome.TOKEN_DEAD, "ExpiredToken"),
    (ApnsReply(400, "BadDeviceToken"), Outcome.TOKEN_DEAD, "BadDeviceToken"),
    (ApnsReply(400, "DeviceTokenNotForTopic"), Outcome.TOKEN_DEAD, "DeviceTokenNotForTopic"),
    (ApnsReply(429, "TooManyRequests"), Outcome.RETRY, "TooManyRequests"),
    (ApnsReply(500, "InternalServerError"), Outcome.RETRY, "InternalServerError"),
    (ApnsReply(503, "ServiceUnavailable"), Outcome.RETRY, "ServiceUnavailable"),
    (ApnsReply(403, "InvalidProviderToken"), Outcome.FAILED, "InvalidProviderToken"),
    (ApnsReply(403, "ExpiredProviderToken"), Outcome.FAILED, "ExpiredProviderToken"),
    (ApnsReply(413, "PayloadTooLarge"), Outcome.FAILED, "PayloadTooLarge"),
    (ApnsReply(400, "BadCollapseId"), Outcome.FAILED, "BadCollapseId"),
    (ApnsReply(400, "TopicDisallowed"), Outcome.FAILED, "TopicDisallowed"),
    (ApnsReply(404, "BadPath"), Outcome.FAILED, "BadPath"),
    (ApnsReply(405, "MethodNotAllowed"), Outcome.FAILED, "MethodNotAllowed"),
    (ApnsReply(410, "SomethingNew"), Outcome.FAILED, "SomethingNew"),
    (ApnsReply(502, "BadGateway"), Outcome.RETRY, "BadGateway"),
]


@pytest.mark.parametrize(("reply", "outcome", "reason"), ROWS, ids=lambda v: str(v)[:40])
async def test_each_status_and_reason_maps_to_its_outcome(
    apns_sim: ApnsSimulator,
    apns_provider: ApnsProvider,
    reply: ApnsReply,
    outcome: Outcome,
    reason: str,
) -> None:
    message = make_message()
    apns_sim.script(reply, token=message.token)

    [report] = await apns_provider.send([message])

    assert report.outcome is outcome
    assert report.reason == reason
    assert report.status == reply.status
    assert report.provider_id == apns_sim.requests[0].headers["apns-id"]
    assert report.token_invalid_since is None
    # dead-token answers that en masse mean a wrong environment or topic, not dead phones
    assert report.misconfiguration == (reason in {"BadDeviceToken", "DeviceTokenNotForTopic"})


async def test_success_reports_the_apns_id(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    [report] = await apns_provider.send([make_message()])

    assert report.outcome is Outcome.SENT
    assert report.status == 200
    assert report.reason is None
    assert report.provider_id == apns_sim.requests[0].headers["apns-id"]


async def test_unregistered_carries_the_time_apple_last_saw_the_token(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    message = make_message()
    since = datetime(2026, 3, 1, 12, 30, 15, 250_000, tzinfo=UTC)
    apns_sim.unregister(message.token, since=since)

    [report] = await apns_provider.send([message])

    assert report.outcome is Outcome.TOKEN_DEAD
    assert report.reason == "Unregistered"
    assert report.status == 410
    assert report.token_invalid_since == since
    assert report.is_token_dead


async def test_only_unregistered_carries_its_timestamp(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    # Apple documents the timestamp for Unregistered: it says since when the token was dead,
    # which the registry compares with the token's last registration. Any other 410 is final.
    message = make_message()
    since = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    apns_sim.script(ApnsReply(410, "ExpiredToken", timestamp=since), token=message.token)

    [report] = await apns_provider.send([message])

    assert (report.outcome, report.reason) == (Outcome.TOKEN_DEAD, "ExpiredToken")
    assert report.token_invalid_since is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("0", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("soon", None)],
)
async def test_retry_after_is_honoured_when_present(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider, header: str, seconds: float | None
) -> None:
    message = make_message()
    apns_sim.script(ApnsReply(503, "ServiceUnavailable", retry_after=header), token=message.token)

    [report] = await apns_provider.send([message])

    assert report.outcome is Outcome.RETRY
    assert report.retry_after == seconds


async def test_a_429_window_then_recovery(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    apns_sim.script(ApnsReply(429, "TooManyRequests", retry_after=3), times=2)
    messages = [make_message() for _ in range(3)]

    reports = [(await apns_provider.send([message]))[0] for message in messages]

    assert [r.outcome for r in reports] == [Outcome.RETRY, Outcome.RETRY, Outcome.SENT]
    assert reports[0].retry_after == 3.0


async def test_a_malformed_token_is_rejected_by_apple_as_bad_device_token(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    [report] = await apns_provider.send([make_message("not-a-hex-token")])

    assert report.outcome is Outcome.TOKEN_DEAD
    assert report.reason == "BadDeviceToken"


async def test_oversized_payload_fails_without_reaching_apple(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    [report] = await apns_provider.send([make_message(body="x" * 5000)])

    assert report.outcome is Outcome.FAILED
    assert report.reason == "PayloadTooLarge"
    assert apns_sim.requests == []


async def test_an_unreachable_endpoint_is_a_retry(apns_sim: ApnsSimulator) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = app_for(apns_sim).with_config(endpoint=f"https://127.0.0.1:{port}")
    provider = unreachable.provider(send_timeout_seconds=5)
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report.outcome is Outcome.RETRY
    assert report.reason == "connection_error"


async def test_unusable_credentials_fail_the_send_instead_of_raising(tmp_path: Path) -> None:
    provider = ApnsProvider(
        AppProfile(id="shop"),
        ApnsConfig(
            topic="com.example.pushgate",
            team_id="TEAM",
            key_id="KEY",
            key_file=tmp_path / "missing.p8",
        ),
    )
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report.outcome is Outcome.FAILED
    assert report.reason is not None and report.reason.startswith("configuration_error")
