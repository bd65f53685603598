"""Every row of FcmProvider.OUTCOMES, driven through real firebase-admin sends to the simulator."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from firebase_admin import exceptions, messaging

from gateway.providers.fcm import FcmProvider
from gateway.simulators.fcm import Fault, FcmSimulator
from tests.providers.fcm_fixtures import (  # noqa: F401 -- fixtures register by import
    FcmApp,
    app_for,
    fcm_app_fixture,
    fcm_provider_fixture,
    fcm_sim_fixture,
    make_message,
    new_token,
    service_account_key,
)
from tokens.reports import DeliveryReport, Outcome

ROWS = [
    # (per-token fault, expected report)
    (Fault("UNREGISTERED"), DeliveryReport(Outcome.TOKEN_DEAD, None, "UNREGISTERED", 404)),
    (
        Fault("SENDER_ID_MISMATCH"),
        DeliveryReport(Outcome.TOKEN_DEAD, None, "SENDER_ID_MISMATCH", 403, misconfiguration=True),
    ),
    # INVALID_ARGUMENT naming the token (message.token) vs naming another field.
    (Fault("INVALID_ARGUMENT"), DeliveryReport(Outcome.TOKEN_DEAD, None, "INVALID_ARGUMENT", 400)),
    (
        Fault("INVALID_ARGUMENT", field="message.android.ttl"),
        DeliveryReport(Outcome.FAILED, None, "INVALID_ARGUMENT", 400),
    ),
    (
        Fault("QUOTA_EXCEEDED", retry_after="7"),
        DeliveryReport(Outcome.RETRY, None, "QUOTA_EXCEEDED", 429, retry_after=7.0),
    ),
    (
        Fault("UNAVAILABLE", retry_after="30"),
        DeliveryReport(Outcome.RETRY, None, "UNAVAILABLE", 503, retry_after=30.0),
    ),
    (Fault("UNAVAILABLE"), DeliveryReport(Outcome.RETRY, None, "UNAVAILABLE", 503)),
    (Fault("INTERNAL"), DeliveryReport(Outcome.RETRY, None, "INTERNAL", 500)),
    (
        Fault("THIRD_PARTY_AUTH_ERROR"),
        DeliveryReport(Outcome.FAILED, None, "THIRD_PARTY_AUTH_ERROR", 401),
    ),
]


@pytest.mark.parametrize(
    ("fault", "expected"),
    ROWS,
    ids=[f"{fault.error}-{fault.field or fault.retry_after}" for fault, _ in ROWS],
)
async def test_fcm_error_rows(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider, fault: Fault, expected: DeliveryReport
) -> None:
    token = new_token()
    fcm_sim.fail_token(token, fault)

    [report] = await fcm_provider.send([make_message(token)])

    assert report == expected
    # One request per send: firebase-admin's own 5xx retries are off, the pipeline retries.
    assert [request.token for request in fcm_sim.sends] == [token]


async def test_success_reports_the_fcm_message_name(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    reports = await fcm_provider.send([make_message(), make_message()])

    assert [report.outcome for report in reports] == [Outcome.SENT, Outcome.SENT]
    names = [report.provider_id for report in reports]
    assert all(name and name.startswith("projects/pushgate-test/messages/") for name in names)
    assert len(set(names)) == 2


async def test_a_token_fcm_finds_malformed_is_dead(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    [report] = await fcm_provider.send([make_message("not a token!")])

    assert report.outcome is Outcome.TOKEN_DEAD
    assert (report.reason, report.status) == ("INVALID_ARGUMENT", 400)


async def test_a_payload_fcm_refuses_fails_without_touching_the_token(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    # "from" is a reserved data key: INVALID_ARGUMENT about message.data, not the token.
    [report] = await fcm_provider.send([make_message(data={"from": "shop"})])

    assert report == DeliveryReport(Outcome.FAILED, reason="INVALID_ARGUMENT", status=400)


async def test_an_http_date_retry_after_becomes_seconds(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)
    fcm_sim.inject(Fault("UNAVAILABLE", retry_after=later), count=1)

    [report] = await fcm_provider.send([make_message()])

    assert report.outcome is Outcome.RETRY
    assert report.retry_after is not None and 500 < report.retry_after <= 600


async def test_a_reset_connection_is_retried(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    fcm_sim.inject(Fault(reset=True), count=1)

    first, second = (
        await fcm_provider.send([make_message()]),
        await fcm_provider.send([make_message()]),
    )

    assert first == [DeliveryReport(Outcome.RETRY, reason="connection_error")]
    assert second[0].outcome is Outcome.SENT


async def test_a_send_past_its_timeout_is_retried(fcm_sim: FcmSimulator, fcm_app: FcmApp) -> None:
    # The simulator holds the answer far longer than the timeout; it lets go when it stops.
    fcm_sim.inject(Fault(delay=60.0), count=1)
    provider = fcm_app.provider(send_timeout_seconds=0.2)
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report == DeliveryReport(Outcome.RETRY, reason="timeout")


async def test_an_expired_message_is_not_sent(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    expired = make_message(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    reports = await fcm_provider.send([expired, make_message()])

    assert reports[0] == DeliveryReport(Outcome.FAILED, reason="expired")
    assert reports[1].outcome is Outcome.SENT
    assert len(fcm_sim.sends) == 1


async def test_a_service_account_of_another_project_is_refused(
    fcm_sim: FcmSimulator, tmp_path: Path
) -> None:
    app = app_for(fcm_sim, tmp_path, project_id="someone-elses-project")
    provider = app.provider()
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report == DeliveryReport(Outcome.FAILED, reason="PERMISSION_DENIED", status=403)


async def test_a_revoked_access_token_is_refreshed_once_and_resent(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    await fcm_provider.send([make_message()])
    fcm_sim.revoke_access_tokens()

    reports = await fcm_provider.send([make_message() for _ in range(20)])

    assert {report.outcome for report in reports} == {Outcome.SENT}
    # 20 concurrent 401s share one refresh.
    assert [request.status for request in fcm_sim.token_requests] == [200, 200]


async def test_third_party_auth_errors_do_not_refresh_the_oauth_token(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    token = new_token()
    fcm_sim.fail_token(token, "THIRD_PARTY_AUTH_ERROR")

    await fcm_provider.send([make_message(token)])

    assert len(fcm_sim.token_requests) == 1
    assert len(fcm_sim.sends) == 1


async def test_a_token_endpoint_refusal_fails_the_batch_without_sending(
    fcm_sim: FcmSimulator, tmp_path: Path
) -> None:
    # A service account this simulator never issued: its assertion cannot be verified.
    async with FcmSimulator() as stranger:
        foreign = stranger.write_service_account(
            tmp_path / "foreign.json", "pushgate-test", key=service_account_key()
        )
    account = json.loads(foreign.read_text())
    account["token_uri"] = fcm_sim.token_uri
    foreign.write_text(json.dumps(account))
    app = app_for(fcm_sim, tmp_path, service_account_file=foreign)
    provider = app.provider()
    try:
        reports = await provider.send([make_message(), make_message()])
    finally:
        await provider.close()

    assert reports == [DeliveryReport(Outcome.FAILED, reason="oauth_refused")] * 2
    assert [request.error_code for request in fcm_sim.token_requests] == ["invalid_grant"]
    assert fcm_sim.sends == []


async def test_an_unreachable_token_endpoint_is_retried(tmp_path: Path) -> None:
    async with FcmSimulator() as gone:
        app = app_for(gone, tmp_path)
    provider = app.provider()  # its token_uri now points at a closed port
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report == DeliveryReport(Outcome.RETRY, reason="oauth_unavailable")


def _rpc_error(
    status: int, rpc_status: str, retry_after: str | None = None
) -> messaging.SendResponse:
    request = httpx.Request("POST", "https://fcm.googleapis.com/v1/projects/p/messages:send")
    response = httpx.Response(
        status,
        json={"error": {"code": status, "message": "...", "status": rpc_status}},
        headers={"Retry-After": retry_after} if retry_after else None,
        request=request,
    )
    error = exceptions.FirebaseError(rpc_status, "...", http_response=response)
    return messaging.SendResponse(None, error)


@pytest.mark.parametrize(
    ("status", "rpc_status", "outcome"),
    [
        (429, "RESOURCE_EXHAUSTED", Outcome.RETRY),
        (504, "DEADLINE_EXCEEDED", Outcome.RETRY),
        (401, "UNAUTHENTICATED", Outcome.FAILED),
        (403, "PERMISSION_DENIED", Outcome.FAILED),
        (404, "NOT_FOUND", Outcome.FAILED),
    ],
)
def test_google_rpc_statuses_without_an_fcm_error_code(
    status: int, rpc_status: str, outcome: Outcome
) -> None:
    report = FcmProvider.classify(_rpc_error(status, rpc_status, retry_after="3"))

    expected_after = 3.0 if outcome is Outcome.RETRY else None
    assert report == DeliveryReport(
        outcome, reason=rpc_status, status=status, retry_after=expected_after
    )


@pytest.mark.parametrize(("status", "outcome"), [(502, Outcome.RETRY), (418, Outcome.FAILED)])
def test_a_body_that_is_not_google_rpc_is_classified_by_status(
    status: int, outcome: Outcome
) -> None:
    request = httpx.Request("POST", "https://fcm.googleapis.com/v1/projects/p/messages:send")
    response = httpx.Response(status, text="<html>Bad Gateway</html>", request=request)
    error = exceptions.FirebaseError("UNKNOWN", "...", http_response=response)

    report = FcmProvider.classify(messaging.SendResponse(None, error))

    assert report == DeliveryReport(outcome, reason=f"HTTP_{status}", status=status)


def test_every_table_row_is_a_known_outcome() -> None:
    assert set(FcmProvider.OUTCOMES.values()) <= set(Outcome)
    dead = {code for code, outcome in FcmProvider.OUTCOMES.items() if outcome is Outcome.TOKEN_DEAD}
    assert dead == {"UNREGISTERED", "SENDER_ID_MISMATCH"}  # plus INVALID_ARGUMENT naming the token


async def test_a_message_firebase_admin_cannot_encode_fails_alone(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider
) -> None:
    unencodable = replace(make_message(), token="")  # refused before any request is made

    reports = await fcm_provider.send([make_message(), unencodable, make_message()])

    assert [report.outcome for report in reports] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    assert reports[1].reason == "invalid_message"
