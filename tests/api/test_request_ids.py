"""Request ids (``X-Request-Id`` in, the same or a new one out, in the request's log lines),
JSON spacing across answers, and what an API-only process's ``/metrics`` leaves out."""

from __future__ import annotations

import json
import logging
import re

import pytest

from gateway.api.request_ids import MAX_REQUEST_ID_LENGTH, request_id_from
from tests.api.conftest import Client, register

MADE_UP = re.compile(r"[0-9a-f]{32}")


async def test_the_callers_request_id_comes_back(client: Client) -> None:
    response = await client.get("/v1/users/u1/devices", headers={"X-Request-Id": "trace-7.a_b"})
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "trace-7.a_b"


async def test_without_one_the_gateway_makes_one_up_for_each_request(client: Client) -> None:
    first = (await client.get("/healthz")).headers["X-Request-Id"]
    second = (await client.get("/healthz")).headers["X-Request-Id"]
    assert MADE_UP.fullmatch(first) and MADE_UP.fullmatch(second) and first != second


@pytest.mark.parametrize(
    "sent",
    ["", "has space", "tab\there", "é-accent", "x" * (MAX_REQUEST_ID_LENGTH + 1)],
    ids=["empty", "space", "control", "non-ascii", "too-long"],
)
def test_an_unusable_request_id_is_replaced_never_refused(sent: str) -> None:
    assert MADE_UP.fullmatch(request_id_from(sent))


def test_a_usable_request_id_is_kept_as_sent() -> None:
    longest = "r" * MAX_REQUEST_ID_LENGTH
    assert request_id_from(longest) == longest
    assert request_id_from("0f8fad5b-d9cb-469f-a165-70867728950e") == (
        "0f8fad5b-d9cb-469f-a165-70867728950e"
    )


async def test_errors_carry_the_request_id_too(client: Client) -> None:
    missing = await client.get("/v1/notifications/nope", headers={"X-Request-Id": "lost-1"})
    assert missing.status == 404
    assert missing.headers["X-Request-Id"] == "lost-1"
    refused = await client.get("/v1/users/u1/devices", headers={"Authorization": "Bearer no"})
    assert refused.status == 401
    assert MADE_UP.fullmatch(refused.headers["X-Request-Id"])


async def test_the_log_lines_of_a_request_name_it(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        await client.get("/v1/users/u1/devices", headers={"X-Request-Id": "seen-in-logs"})
    [access] = [r for r in caplog.records if getattr(r, "event", None) == "http.request"]
    assert access.request_id == "seen-in-logs"  # type: ignore[attr-defined]
    assert (access.method, access.path, access.status) == (  # type: ignore[attr-defined]
        "GET",
        "/v1/users/u1/devices",
        200,
    )


async def test_every_json_answer_is_compact(client: Client) -> None:
    """One spacing for every endpoint: answers, problems, health."""
    await register(client)
    answers = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/v1/users/u1/devices"),
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "transactional", "body": "Hi, you"},
        ),
        await client.get("/v1/notifications/missing"),  # problem+json
        await client.post("/v1/devices", json={"user_id": "u1"}),  # validation problem
    ]
    for response in answers:
        text = await response.text()
        compact = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
        assert text == compact, f"{response.url.path}: {text}"


async def test_an_api_only_process_has_no_delivery_metrics(client: Client) -> None:
    """Deliveries are counted in the process that delivers; an API-only one shows none of
    those families, not even as zeros."""
    text = await (await client.get("/metrics")).text()
    assert "pushgate_http_requests" in text
    for family in (
        "pushgate_deliveries",
        "pushgate_queue_depth",
        "pushgate_breaker_open",
        "pushgate_provider_responses",
        "pushgate_provider_send_duration_seconds",
        "pushgate_provider_requests_in_flight",
    ):
        assert family not in text
