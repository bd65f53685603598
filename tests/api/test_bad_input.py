"""Every kind of bad input gets a clear 4xx problem+json and stores nothing."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import IOS_TOKEN, OTHER_APP_KEY, TX_KEY, Client, auth, register

NOTE = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
DEVICE = {"user_id": "u1", "app": "demo", "platform": "ios", "token": IOS_TOKEN}


async def row_count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()  # noqa: S608


async def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"] and body["detail"]
    return body


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({**DEVICE, "timezone": "Mars/Olympus"}, "invalid_timezone", "timezone"),
        ({**DEVICE, "timezone": "+05:00"}, "invalid_timezone", "timezone"),
        ({**DEVICE, "token": "zz" * 32}, "invalid_token", None),
        ({**DEVICE, "token": "ab" * 10}, "invalid_token", None),
        ({**DEVICE, "platform": "android", "token": ""}, "invalid_token", None),
        ({**DEVICE, "platform": "android", "token": "has spaces"}, "invalid_token", None),
        ({**DEVICE, "platform": "windows"}, "invalid_request", "platform"),
        ({**DEVICE, "user_id": 42}, "invalid_request", "user_id"),
        ({**DEVICE, "permission": "maybe"}, "invalid_request", "permission"),
        ({**DEVICE, "app": "nope"}, "unknown_app", None),
        ({**DEVICE, "surprise": 1}, "invalid_request", "surprise"),
    ],
)
async def test_bad_device_registration(
    client: Client, engine: AsyncEngine, payload: dict[str, Any], code: str, field: str | None
) -> None:
    body = await assert_problem(await client.post("/v1/devices", json=payload), 422, code)
    if field is not None:
        assert field in [error["field"] for error in body["errors"]]
    assert await row_count(engine, "devices") == 0


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({**NOTE, "app": "nope"}, 422, "unknown_app"),
        ({**NOTE, "category": "order_shipped", "tier": "promotional"}, 422, "tier_conflict"),
        ({**NOTE, "expires_at": "2020-01-01T00:00:00+00:00"}, 422, "invalid_request"),
        ({**NOTE, "expires_at": "2030-01-01T00:00:00"}, 422, "invalid_request"),  # no offset
        ({**NOTE, "ttl_seconds": 60, "expires_at": "2030-01-01T00:00:00Z"}, 422, "invalid_request"),
        ({**NOTE, "tier": "urgent"}, 422, "invalid_request"),
        ({**NOTE, "badge": "one"}, 422, "invalid_request"),
        ({**NOTE, "data": ["not", "an", "object"]}, 422, "invalid_request"),
        ({"user_id": "u1", "app": "demo", "tier": "transactional"}, 422, "invalid_request"),
        ({"app": "demo", "body": "x"}, 422, "invalid_request"),
        ({**NOTE, "title": "t" * 5000}, 422, "invalid_request"),
    ],
)
async def test_bad_notification(
    client: Client, engine: AsyncEngine, payload: dict[str, Any], status: int, code: str
) -> None:
    await register(client)
    await assert_problem(await client.post("/v1/notifications", json=payload), status, code)
    assert await row_count(engine, "notifications") == 0


async def test_tier_the_key_may_not_send(client: Client, engine: AsyncEngine) -> None:
    await register(client)
    response = await client.post(
        "/v1/notifications", json={**NOTE, "tier": "promotional"}, headers=auth(TX_KEY)
    )
    await assert_problem(response, 403, "tier_not_allowed")
    # a category mapping to a forbidden tier is refused the same way: no dodging
    response = await client.post(
        "/v1/notifications",
        json={**NOTE, "tier": None, "category": "weekly_sale"},
        headers=auth(TX_KEY),
    )
    await assert_problem(response, 403, "tier_not_allowed")
    assert await row_count(engine, "notifications") == 0


async def test_app_the_key_may_not_use(client: Client) -> None:
    response = await client.post("/v1/notifications", json=NOTE, headers=auth(OTHER_APP_KEY))
    await assert_problem(response, 403, "app_not_allowed")


async def test_malformed_json(client: Client, engine: AsyncEngine) -> None:
    response = await client.post(
        "/v1/notifications", data=b'{"user_id": ', headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 400, "invalid_json")
    response = await client.post("/v1/notifications", json=[1, 2])
    await assert_problem(response, 422, "invalid_request")
    assert await row_count(engine, "notifications") == 0


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic abc", "Bearer "])
async def test_missing_or_wrong_key(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {"Authorization": ""}
    for method, path in [
        ("POST", "/v1/notifications"),
        ("GET", "/v1/users/u1/devices"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]:
        response = await client.request(method, path, json=NOTE, headers=headers)
        await assert_problem(response, 401, "unauthorized")


async def test_oversized_body(client: Client, engine: AsyncEngine) -> None:
    big = json.dumps({**NOTE, "data": {"blob": "x" * 2_000_000}}).encode()
    response = await client.post(
        "/v1/notifications", data=io.BytesIO(big), headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "payload_too_large")
    assert await row_count(engine, "notifications") == 0


async def test_batch_over_limit(client: Client, engine: AsyncEngine) -> None:
    response = await client.post("/v1/notifications/batch", json={"notifications": [NOTE] * 501})
    body = await assert_problem(response, 422, "invalid_request")
    assert "501" in body["detail"]
    assert await row_count(engine, "notifications") == 0


async def test_reused_idempotency_key_with_other_body(client: Client, engine: AsyncEngine) -> None:
    await register(client)
    headers = {"Idempotency-Key": "k1"}
    assert (await client.post("/v1/notifications", json=NOTE, headers=headers)).status == 202
    response = await client.post(
        "/v1/notifications", json={**NOTE, "body": "different"}, headers=headers
    )
    await assert_problem(response, 409, "idempotency_key_reused")
    assert await row_count(engine, "notifications") == 1


async def test_bad_quiet_hours_and_timezone_preferences(
    client: Client, engine: AsyncEngine
) -> None:
    response = await client.put(
        "/v1/users/u1/preferences", json={"quiet_hours": {"start": "25:00", "end": "08:00"}}
    )
    body = await assert_problem(response, 422, "invalid_request")
    assert body["errors"][0]["field"] == "quiet_hours.start"
    response = await client.patch("/v1/users/u1/preferences", json={"timezone": "+05:00"})
    await assert_problem(response, 422, "invalid_timezone")
    assert await row_count(engine, "preferences") == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/notifications/0b9a7c1e-0000-0000-0000-000000000000"),
        ("DELETE", "/v1/notifications/nope"),
        ("DELETE", "/v1/devices/nope"),
        ("GET", "/v1/nothing-here"),
    ],
)
async def test_unknown_ids(client: Client, method: str, path: str) -> None:
    await assert_problem(await client.request(method, path), 404, "not_found")


async def test_payload_over_the_apns_limit_is_refused_at_acceptance(
    client: Client, engine: AsyncEngine
) -> None:
    await register(client)
    # each field is within its own limit, together they exceed APNs's 4,096 bytes
    response = await client.post(
        "/v1/notifications", json={**NOTE, "title": "t" * 1000, "body": "b" * 4000}
    )
    body = await assert_problem(response, 413, "payload_too_large")
    assert "APNs" in body["detail"]
    assert await row_count(engine, "notifications") == 0


@pytest.mark.parametrize("key", ["aps", "from", "google.c.a.e", "gcm.n.e", "message_type"])
async def test_reserved_data_keys_are_refused(
    client: Client, engine: AsyncEngine, key: str
) -> None:
    await register(client)
    response = await client.post("/v1/notifications", json={**NOTE, "data": {key: "x"}})
    body = await assert_problem(response, 422, "invalid_request")
    assert body["errors"][0]["field"] == f"data.{key}"
    assert await row_count(engine, "notifications") == 0
