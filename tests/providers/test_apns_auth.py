"""Both APNs auth modes, JWT verification, and the production/sandbox split, over real TLS."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from gateway.providers.apns import ApnsConfig, ApnsProvider
from gateway.providers.base import AppProfile
from gateway.simulators.apns import ApnsSimulator, ProviderKey
from gateway.simulators.tls import CertificateAuthority
from tests.providers.apns_fixtures import (  # noqa: F401 -- fixtures register by import
    TOPIC,
    ApnsApp,
    apns_provider_fixture,
    apns_sim_fixture,
    app_for,
    make_message,
)
from tokens.reports import Outcome


async def _send_once(app: ApnsApp) -> Outcome:
    provider = app.provider(send_timeout_seconds=10)
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()
    return report.outcome


def _with_key(app: ApnsApp, tmp_path: Path, key: ProviderKey) -> ApnsApp:
    key_file = tmp_path / "other.p8"
    key_file.write_text(key.private_key_pem)
    return app.with_config(key_file=key_file, key_id=key.key_id, team_id=key.team_id)


async def test_token_auth_sends_an_es256_jwt_naming_key_and_team(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    reports = await apns_provider.send([make_message(), make_message()])

    assert [r.outcome for r in reports] == [Outcome.SENT, Outcome.SENT]
    request = apns_sim.requests[0]
    assert request.auth == "token"
    scheme, token = request.headers["authorization"].split(" ")
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token)["kid"] == apns_sim.provider_key.key_id
    claims = jwt.decode(token, apns_sim.provider_key.public_key, algorithms=["ES256"])
    assert claims["iss"] == apns_sim.provider_key.team_id
    assert apns_sim.requests[1].headers["authorization"] == request.headers["authorization"]


async def test_certificate_auth_needs_no_jwt(apns_sim: ApnsSimulator) -> None:
    outcome = await _send_once(app_for(apns_sim, certificate_auth=True))

    assert outcome is Outcome.SENT
    [request] = apns_sim.requests
    assert request.auth == "certificate"
    assert "authorization" not in request.headers
    assert request.headers["apns-topic"] == TOPIC


async def test_a_client_certificate_from_another_ca_is_refused_at_the_handshake(
    apns_sim: ApnsSimulator, tmp_path: Path
) -> None:
    stranger = CertificateAuthority.generate("not Apple").issue_client_certificate("x", TOPIC)
    app = ApnsApp(
        AppProfile(id="shop"),
        ApnsConfig(
            topic=TOPIC,
            cert_file=stranger.write_bundle(tmp_path / "stranger.pem"),
            endpoint=apns_sim.endpoint,
            ca_file=apns_sim.ca_file,
        ),
    )
    provider = app.provider(send_timeout_seconds=10)
    try:
        [report] = await provider.send([make_message()])
    finally:
        await provider.close()

    assert report.outcome is Outcome.RETRY  # connection errors are transient
    assert apns_sim.requests == []


async def test_a_jwt_from_an_unknown_key_is_invalid_provider_token(
    apns_sim: ApnsSimulator, tmp_path: Path
) -> None:
    app = _with_key(app_for(apns_sim), tmp_path, ProviderKey.generate(key_id="UNKNOWN001"))

    assert await _send_once(app) is Outcome.FAILED
    assert apns_sim.requests[0].status == 403
    assert apns_sim.requests[0].reason == "InvalidProviderToken"


async def test_a_jwt_signed_by_the_wrong_key_is_invalid_provider_token(
    apns_sim: ApnsSimulator, tmp_path: Path
) -> None:
    forged = ProviderKey.generate(
        key_id=apns_sim.provider_key.key_id, team_id=apns_sim.provider_key.team_id
    )
    app = _with_key(app_for(apns_sim), tmp_path, forged)

    assert await _send_once(app) is Outcome.FAILED
    assert apns_sim.requests[0].reason == "InvalidProviderToken"


async def test_an_hour_old_jwt_is_expired_provider_token() -> None:
    async with ApnsSimulator(clock=lambda: time.time() + 2 * 3600) as simulator:
        assert await _send_once(app_for(simulator)) is Outcome.FAILED
        assert simulator.requests[0].reason == "ExpiredProviderToken"


async def test_sandbox_mode_can_accept_any_well_formed_jwt(tmp_path: Path) -> None:
    async with ApnsSimulator(accept_any_provider_key=True) as simulator:
        app = _with_key(app_for(simulator), tmp_path, ProviderKey.generate(key_id="GATEWAY001"))

        assert await _send_once(app) is Outcome.SENT


async def test_trusting_another_provider_key(apns_sim: ApnsSimulator, tmp_path: Path) -> None:
    key = ProviderKey.generate(key_id="SECOND0001", team_id="TEAM000002")
    apns_sim.trust_provider_key(key)

    assert await _send_once(_with_key(app_for(apns_sim), tmp_path, key)) is Outcome.SENT


async def test_each_device_environment_goes_to_its_own_apns_host(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    reports = await apns_provider.send(
        [
            make_message(environment="production"),
            make_message(environment="sandbox"),
            make_message(environment="production"),
        ]
    )

    assert [r.outcome for r in reports] == [Outcome.SENT] * 3
    by_environment = {r.environment: r for r in apns_sim.requests}
    assert by_environment["production"].headers[":authority"] == "api.push.apple.com"
    assert by_environment["sandbox"].headers[":authority"] == "api.development.push.apple.com"
    assert by_environment["production"].connection_id != by_environment["sandbox"].connection_id
    assert [r.environment for r in apns_sim.requests].count("production") == 2
