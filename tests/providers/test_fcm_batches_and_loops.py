"""Batching at send_each_async's 500-message limit, use across event loops, TLS with a CA file."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from firebase_admin import messaging

from gateway.providers.base import PushMessage
from gateway.providers.fcm import FcmProvider
from gateway.simulators.fcm import FcmSimulator
from gateway.simulators.tls import CertificateAuthority, server_ssl_context
from tests.providers.fcm_fixtures import (  # noqa: F401 -- fixtures register by import
    FcmApp,
    app_for,
    fcm_app_fixture,
    fcm_provider_fixture,
    fcm_sim_fixture,
    make_message,
    new_token,
    simulator_in_thread,
)
from tokens.reports import DeliveryReport, Outcome


async def test_more_than_500_messages_go_in_batches_of_at_most_500(
    fcm_sim: FcmSimulator, fcm_provider: FcmProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_sizes: list[int] = []
    real_send_each_async = messaging.send_each_async

    async def counting_send_each_async(batch: list[Any], **kwargs: Any) -> Any:
        batch_sizes.append(len(batch))
        return await real_send_each_async(batch, **kwargs)

    monkeypatch.setattr(messaging, "send_each_async", counting_send_each_async)
    messages = [make_message() for _ in range(501)]
    dead = messages[377].token
    fcm_sim.fail_token(dead, "UNREGISTERED")

    reports = await fcm_provider.send(messages)

    assert batch_sizes == [500, 1]
    assert len(reports) == 501
    # Reports come back in message order: each SENT one names the request for its own token.
    names = {request.token: request for request in fcm_sim.sends}
    assert len(names) == 501
    for message, report in zip(messages, reports, strict=True):
        if message.token == dead:
            assert report.outcome is Outcome.TOKEN_DEAD
        else:
            assert report.outcome is Outcome.SENT
            assert names[message.token].status == 200
    assert len({report.provider_id for report in reports}) == 501


def _client_connections_to(port: int) -> list[Any]:
    return [
        connection
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.raddr and connection.raddr.port == port
    ]


def _send_in_new_loop(
    provider: FcmProvider, messages: Sequence[PushMessage]
) -> list[DeliveryReport]:
    return asyncio.run(provider.send(messages))


def test_one_provider_serves_several_event_loops_in_turn(tmp_path: Path) -> None:
    with simulator_in_thread() as simulator:
        port = int(simulator.endpoint.rsplit(":", 1)[1])
        app = app_for(simulator, tmp_path)
        provider = app.provider()  # built outside any loop, as a config loader would

        for _ in range(3):  # each asyncio.run is a new loop; the previous one is closed
            reports = _send_in_new_loop(provider, [make_message() for _ in range(5)])
            assert {report.outcome for report in reports} == {Outcome.SENT}
            # The loop's client was closed at loop shutdown: no connection outlives its loop.
            assert _client_connections_to(port) == []

        asyncio.run(provider.close())
        # Closed, the app id is free again for a new provider, which works in yet another loop.
        replacement = app.provider()
        reports = _send_in_new_loop(replacement, [make_message()])
        asyncio.run(replacement.close())

        assert reports[0].outcome is Outcome.SENT
        assert len(simulator.token_requests) == 2  # one per provider: the token outlives loops
    gc.collect()  # an unclosed socket would surface here as a ResourceWarning (an error)


async def test_a_second_provider_for_the_same_app_is_refused_while_the_first_is_open(
    fcm_provider: FcmProvider, fcm_app: FcmApp
) -> None:
    with pytest.raises(ValueError, match="already exists"):
        fcm_app.provider()


async def test_tls_endpoint_with_the_configured_ca_file(tmp_path: Path) -> None:
    authority = CertificateAuthority.generate()
    context = server_ssl_context(authority.issue_server_certificate(), tmp_path)
    ca_file = authority.write_pem(tmp_path / "ca.pem")
    async with FcmSimulator(ssl_context=context) as simulator:
        # Both the token endpoint (token_uri) and the send endpoint are https here.
        provider = app_for(simulator, tmp_path, ca_file=ca_file).provider()
        try:
            [report] = await provider.send([make_message()])
        finally:
            await provider.close()

    assert simulator.token_uri.startswith("https://")
    assert report.outcome is Outcome.SENT
    assert [request.status for request in simulator.requests] == [200, 200]
