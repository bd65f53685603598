"""Each guard against an aioapns 4.0 defect (see gateway.providers.apns), proven on the wire.

Every test runs under a generous safety deadline so a regression fails instead of hanging; none
asserts on timing. The ``upstream`` tests pin the defects in unmodified aioapns: when one starts
failing, upstream fixed it and the matching guard may go.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aioapns import NotificationRequest

from gateway.providers.apns import ApnsProvider
from gateway.simulators.apns import ApnsReply, ApnsSimulator
from tests.providers.apns_fixtures import (  # noqa: F401 -- fixtures register by import
    apns_provider_fixture,
    apns_sim_fixture,
    app_for,
    close_raw_aioapns_client,
    make_message,
    new_token,
    raw_aioapns_client,
)
from tokens.reports import Outcome

SAFETY_SECONDS = 60  # only ever reached by a hang
H2_INITIAL_WINDOW = 65_535


async def test_5000_sends_with_half_error_responses_do_not_stall(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    messages = [make_message() for _ in range(5000)]
    dead = {m.token for m in messages[::2]}
    apns_sim.script(ApnsReply(400, "BadDeviceToken"), token=lambda token: token in dead)

    async with asyncio.timeout(SAFETY_SECONDS):
        reports = await apns_provider.send(messages)

    error_bytes = sum(len(json.dumps({"reason": "BadDeviceToken"})) for _ in dead)
    assert error_bytes > H2_INITIAL_WINDOW  # enough to exhaust an unacknowledged window
    for message, report in zip(messages, reports, strict=True):
        expected = Outcome.TOKEN_DEAD if message.token in dead else Outcome.SENT
        assert report.outcome is expected
    assert apns_provider.pending_request_count() == 0


async def test_large_error_bodies_split_over_frames_are_read_whole(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    body = json.dumps({"reason": "BadDeviceToken", "detail": "x" * 40_000}).encode()
    apns_sim.script(ApnsReply(400, "BadDeviceToken", body=body))

    async with asyncio.timeout(SAFETY_SECONDS):
        reports = await apns_provider.send([make_message() for _ in range(10)])

    assert len(body) * 10 > 4 * H2_INITIAL_WINDOW
    assert {(r.outcome, r.reason) for r in reports} == {(Outcome.TOKEN_DEAD, "BadDeviceToken")}


async def test_no_per_request_state_outlives_its_request(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    apns_sim.script(ApnsReply(500, "InternalServerError", body=b""), times=50)
    apns_sim.script(ApnsReply(410, "ExpiredToken"), times=50)

    async with asyncio.timeout(SAFETY_SECONDS):
        for _ in range(3):
            await apns_provider.send([make_message() for _ in range(400)])

    assert apns_sim.connections_opened >= 1
    assert apns_provider.pending_request_count() == 0


@pytest.mark.parametrize(
    ("reply", "outcome", "reason"),
    [
        (ApnsReply(200, omit_apns_id=True), Outcome.SENT, None),
        (ApnsReply(503, "ServiceUnavailable", omit_apns_id=True), Outcome.RETRY, None),
        (ApnsReply(500, body=b""), Outcome.RETRY, "HTTP 500"),
        (ApnsReply(400, body=b""), Outcome.FAILED, "HTTP 400"),
        (ApnsReply(410, body=b""), Outcome.FAILED, "HTTP 410"),
        (ApnsReply(503, body=b"<html>upstream down</html>"), Outcome.RETRY, "HTTP 503"),
        (ApnsReply(400, body=b'["BadDeviceToken"]'), Outcome.FAILED, "HTTP 400"),
    ],
    ids=[
        "200-no-apns-id",
        "503-no-apns-id",
        "500-empty",
        "400-empty",
        "410-empty",
        "503-html",
        "400-json-array",
    ],
)
async def test_odd_responses_resolve_and_leave_the_connection_usable(
    apns_sim: ApnsSimulator,
    apns_provider: ApnsProvider,
    reply: ApnsReply,
    outcome: Outcome,
    reason: str | None,
) -> None:
    odd = make_message()
    apns_sim.script(reply, token=odd.token)

    async with asyncio.timeout(SAFETY_SECONDS):
        [report] = await apns_provider.send([odd])
        [after] = await apns_provider.send([make_message()])

    assert report.outcome is outcome
    if reason is not None:
        assert report.reason == reason
    assert report.provider_id == apns_sim.requests[0].headers["apns-id"]
    assert after.outcome is Outcome.SENT
    assert apns_sim.connections_opened == 1


async def test_rst_stream_is_a_retry_and_frees_the_stream_slot() -> None:
    async with ApnsSimulator(max_concurrent_streams=4) as simulator:
        provider = app_for(simulator).provider(max_connections=1)
        simulator.script(ApnsReply(fault="rst_stream"), times=10)
        try:
            async with asyncio.timeout(SAFETY_SECONDS):
                reset = await provider.send([make_message() for _ in range(10)])
                after = await provider.send([make_message() for _ in range(10)])
        finally:
            await provider.close()

    assert {(r.outcome, r.reason) for r in reset} == {(Outcome.RETRY, "stream_reset")}
    assert {r.outcome for r in after} == {Outcome.SENT}
    assert simulator.connections_opened == 1


async def test_goaway_resends_unprocessed_requests_on_a_new_connection(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    apns_sim.script(ApnsReply(fault="goaway"), times=1)

    async with asyncio.timeout(SAFETY_SECONDS):
        [report] = await apns_provider.send([make_message()])
        [after] = await apns_provider.send([make_message()])

    assert report.outcome is Outcome.SENT
    first, resent, _ = apns_sim.requests
    assert first.headers["apns-id"] == resent.headers["apns-id"]  # the same request, once more
    assert first.connection_id != resent.connection_id
    assert after.outcome is Outcome.SENT
    assert apns_provider.pending_request_count() == 0


async def test_a_connection_reset_is_a_retry_and_the_next_send_reconnects(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    apns_sim.script(ApnsReply(fault="reset_connection"), times=1)

    async with asyncio.timeout(SAFETY_SECONDS):
        [report] = await apns_provider.send([make_message()])
        [after] = await apns_provider.send([make_message()])

    assert (report.outcome, report.reason) == (Outcome.RETRY, "connection_closed")
    assert after.outcome is Outcome.SENT
    assert apns_sim.connections_opened == 2


async def test_a_missed_deadline_does_not_poison_the_connection(apns_sim: ApnsSimulator) -> None:
    provider = app_for(apns_sim).provider(send_timeout_seconds=0.2, max_connections=1)
    silent = make_message()
    apns_sim.script(ApnsReply(fault="no_response"), token=silent.token)
    try:
        async with asyncio.timeout(SAFETY_SECONDS):
            doomed = asyncio.create_task(provider.send([silent]))
            await apns_sim.wait_for_requests(1)
            # The deadline is taken when a send starts: the others get all the time they need.
            provider.send_timeout_seconds = SAFETY_SECONDS
            alongside = await provider.send([make_message(), make_message()])
            [timed_out] = await doomed
            [after] = await provider.send([make_message()])
    finally:
        pending = provider.pending_request_count()
        await provider.close()

    assert (timed_out.outcome, timed_out.reason) == (Outcome.RETRY, "timeout")
    assert [r.outcome for r in alongside] == [Outcome.SENT, Outcome.SENT]
    assert after.outcome is Outcome.SENT
    assert apns_sim.connections_opened == 1
    assert apns_sim.streams_reset_by_clients == 1  # the server was told to forget it
    assert pending == 0


async def test_a_cancelled_send_does_not_poison_the_connection(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    silent = make_message()
    apns_sim.script(ApnsReply(fault="no_response"), token=silent.token)

    async with asyncio.timeout(SAFETY_SECONDS):
        task = asyncio.create_task(apns_provider.send([silent]))
        await apns_sim.wait_for_requests(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [after] = await apns_provider.send([make_message()])

    assert after.outcome is Outcome.SENT
    assert apns_sim.connections_opened == 1
    assert apns_provider.pending_request_count() == 0


async def test_every_request_gets_its_own_apns_id(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    same = make_message(notification_id="n-1")
    other_device = make_message(notification_id="n-1")

    reports = await apns_provider.send([same, same, other_device])

    ids = [r.headers["apns-id"] for r in apns_sim.requests]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(apns_id) for apns_id in ids)
    assert sorted(r.provider_id or "" for r in reports) == sorted(ids)


async def test_max_concurrent_streams_from_settings_is_respected() -> None:
    async with ApnsSimulator(max_concurrent_streams=5) as simulator:
        simulator.script(ApnsReply(delay=0.02))
        provider = app_for(simulator).provider(max_connections=2)
        try:
            async with asyncio.timeout(SAFETY_SECONDS):
                reports = await provider.send([make_message() for _ in range(60)])
        finally:
            await provider.close()

    assert {r.outcome for r in reports} == {Outcome.SENT}
    assert simulator.max_streams_in_flight == 5


async def test_the_simulator_forgets_delayed_answers_once_sent() -> None:
    """Each delayed answer's timer is dropped when it fires: kept, they made every answer cost
    as much as all before it (a 200,000 release wave slowed to 80 answers a second)."""
    async with ApnsSimulator() as simulator:
        simulator.script(ApnsReply(delay=0.001))
        provider = app_for(simulator).provider(max_connections=1)
        try:
            async with asyncio.timeout(SAFETY_SECONDS):
                reports = await provider.send([make_message() for _ in range(50)])
            # the connection is still open: what it holds now, it would hold for ever
            assert [len(connection.timers) for connection in simulator._connections] == [0]
        finally:
            await provider.close()
        assert {r.outcome for r in reports} == {Outcome.SENT}


async def test_503_for_a_while_then_recovery(
    apns_sim: ApnsSimulator, apns_provider: ApnsProvider
) -> None:
    apns_sim.script(ApnsReply(503, "ServiceUnavailable", retry_after=30), seconds=3600, times=3)

    reports = [(await apns_provider.send([make_message()]))[0] for _ in range(4)]

    assert [r.outcome for r in reports] == [Outcome.RETRY] * 3 + [Outcome.SENT]
    assert reports[0].retry_after == 30.0


# -- the defects themselves, in unmodified aioapns --------------------------------------------


async def test_upstream_aioapns_still_keeps_a_stream_entry_per_success(
    apns_sim: ApnsSimulator,
) -> None:
    client = raw_aioapns_client(apns_sim)
    try:
        async with asyncio.timeout(SAFETY_SECONDS):
            for _ in range(20):
                await client.send_notification(NotificationRequest(new_token(), {"aps": {}}))
        [connection] = client.pool.connections
        assert len(connection.request_streams) == 20
    finally:
        await close_raw_aioapns_client(client)


async def test_upstream_aioapns_still_never_returns_flow_control_window(
    apns_sim: ApnsSimulator,
) -> None:
    apns_sim.script(ApnsReply(400, "BadDeviceToken"))
    client = raw_aioapns_client(apns_sim)
    try:
        async with asyncio.timeout(SAFETY_SECONDS):
            for _ in range(10):
                result = await client.send_notification(
                    NotificationRequest(new_token(), {"aps": {}})
                )
                assert result.description == "BadDeviceToken"
        [connection] = client.pool.connections
        consumed = 10 * len(json.dumps({"reason": "BadDeviceToken"}))
        assert connection.conn.inbound_flow_control_window == H2_INITIAL_WINDOW - consumed
    finally:
        await close_raw_aioapns_client(client)
