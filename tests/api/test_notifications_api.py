"""POST/GET/DELETE /v1/notifications and the batch endpoint, through the real app."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from gateway.api.app import create_app
from tests.api.conftest import (
    FCM_TOKEN,
    FULL_KEY,
    TX_KEY,
    Client,
    FakeClock,
    auth,
    make_settings,
    register,
    sha,
)


async def test_transactional_is_queued_with_one_delivery_per_device(client: Client) -> None:
    await register(client)
    await register(client, platform="android", token=FCM_TOKEN)
    response = await client.post(
        "/v1/notifications",
        json={"user_id": "u1", "app": "demo", "category": "order_shipped", "title": "Shipped"},
    )
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "queued"
    assert body["tier"] == "transactional"
    assert body["classified_by"] == "category"
    assert body["reason"] is None
    detail = await (await client.get(f"/v1/notifications/{body['id']}")).json()
    assert sorted(d["platform"] for d in detail["deliveries"]) == ["android", "ios"]
    assert {d["status"] for d in detail["deliveries"]} == {"pending"}
    assert datetime.fromisoformat(detail["created_at"]).tzinfo is not None


async def test_each_tier_in_daytime(client: Client) -> None:
    await register(client)
    await client.put("/v1/users/u1/preferences", json={"promotional": True})
    statuses = {}
    for tier in ("transactional", "behavioral", "promotional"):
        response = await client.post(
            "/v1/notifications", json={"user_id": "u1", "tier": tier, "app": "demo", "body": "x"}
        )
        assert response.status == 202
        statuses[tier] = (await response.json())["status"]
    assert statuses == {"transactional": "queued", "behavioral": "queued", "promotional": "queued"}


async def test_promotional_without_opt_in_is_dropped(client: Client) -> None:
    await register(client)
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "category": "weekly_sale", "body": "x"},
        )
    ).json()
    assert (body["status"], body["reason"]) == ("dropped", "not_opted_in")


async def test_behavioral_opted_out_is_dropped(client: Client) -> None:
    await register(client)
    await client.patch("/v1/users/u1/preferences", json={"behavioral": False})
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"},
        )
    ).json()
    assert (body["status"], body["reason"]) == ("dropped", "opted_out")


async def test_no_devices_is_dropped(client: Client) -> None:
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "nobody", "app": "demo", "tier": "transactional", "body": "x"},
        )
    ).json()
    assert (body["status"], body["reason"]) == ("dropped", "no_active_devices")


async def test_default_tier_is_promotional(client: Client) -> None:
    await register(client)
    body = await (
        await client.post("/v1/notifications", json={"user_id": "u1", "app": "demo", "body": "x"})
    ).json()
    assert (body["tier"], body["classified_by"]) == ("promotional", "default")


async def test_quiet_hours_defer_behavioral_until_morning_local(
    client: Client, clock: FakeClock
) -> None:
    # 12:00 UTC is 23:00 in Sydney (AEDT is not in effect in June: AEST = UTC+10 -> 22:00)
    await register(client, timezone="Australia/Sydney")
    response = await client.post(
        "/v1/notifications",
        json={"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"},
    )
    body = await response.json()
    assert (body["status"], body["reason"]) == ("deferred", "quiet_hours")
    deliver_at = datetime.fromisoformat(body["deliver_at"])
    # 08:00 Sydney on 16 June is 22:00 UTC on 15 June, plus up to 30 minutes of spread
    assert datetime(2026, 6, 15, 22, 0, tzinfo=UTC) <= deliver_at
    assert deliver_at < datetime(2026, 6, 15, 22, 30, tzinfo=UTC)
    detail = await (await client.get(f"/v1/notifications/{body['id']}")).json()
    assert detail["deliveries"] == []


async def test_transactional_goes_at_night(client: Client) -> None:
    await register(client, timezone="Australia/Sydney")
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"},
        )
    ).json()
    assert body["status"] == "queued"


async def test_expires_during_quiet_hours(client: Client) -> None:
    await register(client, timezone="Australia/Sydney")
    body = await (
        await client.post(
            "/v1/notifications",
            json={
                "user_id": "u1",
                "app": "demo",
                "tier": "behavioral",
                "body": "x",
                "ttl_seconds": 600,
            },
        )
    ).json()
    assert (body["status"], body["reason"]) == ("dropped", "expires_during_quiet_hours")


async def test_frequency_cap(client: Client) -> None:
    await register(client)
    await client.put("/v1/users/u1/preferences", json={"promotional": True})
    statuses = []
    for _ in range(3):
        body = await (
            await client.post(
                "/v1/notifications",
                json={"user_id": "u1", "app": "demo", "tier": "promotional", "body": "x"},
            )
        ).json()
        statuses.append((body["status"], body["reason"]))
    assert statuses == [("queued", None), ("queued", None), ("dropped", "frequency_capped")]


async def test_collapse_key_supersedes_deferred(client: Client) -> None:
    await register(client, timezone="Australia/Sydney")
    first = await (
        await client.post(
            "/v1/notifications",
            json={
                "user_id": "u1",
                "app": "demo",
                "tier": "behavioral",
                "body": "1",
                "collapse_key": "cart",
            },
        )
    ).json()
    second = await (
        await client.post(
            "/v1/notifications",
            json={
                "user_id": "u1",
                "app": "demo",
                "tier": "behavioral",
                "body": "2",
                "collapse_key": "cart",
            },
        )
    ).json()
    assert second["status"] == "deferred"
    older = await (await client.get(f"/v1/notifications/{first['id']}")).json()
    assert (older["status"], older["reason"]) == ("dropped", "superseded")


async def test_cancel_deferred_then_conflict(client: Client) -> None:
    await register(client, timezone="Australia/Sydney")
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"},
        )
    ).json()
    cancelled = await client.delete(f"/v1/notifications/{body['id']}")
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"
    again = await client.delete(f"/v1/notifications/{body['id']}")
    assert again.status == 409
    assert (await again.json())["code"] == "not_cancellable"


async def test_cancel_queued_fails_its_pending_deliveries(client: Client) -> None:
    await register(client)
    body = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"},
        )
    ).json()
    assert (await client.delete(f"/v1/notifications/{body['id']}")).status == 200
    detail = await (await client.get(f"/v1/notifications/{body['id']}")).json()
    assert [(d["status"], d["error"]) for d in detail["deliveries"]] == [("failed", "cancelled")]


async def test_idempotency_replays_first_answer(client: Client) -> None:
    await register(client)
    payload = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/v1/notifications", json=payload, headers=headers)
    second = await client.post(
        "/v1/notifications", json=dict(reversed(payload.items())), headers=headers
    )
    assert first.status == second.status == 202
    assert (await first.json()) == (await second.json())
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_idempotency_is_scoped_to_the_key(client: Client) -> None:
    await register(client)
    payload = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    headers = {"Idempotency-Key": "same"}
    first = await (await client.post("/v1/notifications", json=payload, headers=headers)).json()
    other = await client.post(
        "/v1/notifications", json=payload, headers={**headers, **auth(TX_KEY)}
    )
    assert other.status == 202
    assert (await other.json())["id"] != first["id"]


async def test_concurrent_requests_with_one_idempotency_key_make_one_notification(
    client: Client,
) -> None:
    await register(client)
    payload = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    headers = {"Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post("/v1/notifications", json=payload, headers=headers) for _ in range(5))
    )
    ids = {(await response.json())["id"] for response in responses}
    assert len(ids) == 1
    assert {response.status for response in responses} == {202}


async def test_idempotency_key_expires_after_retention(client: Client, clock: FakeClock) -> None:
    await register(client)
    payload = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    headers = {"Idempotency-Key": "k"}
    first = await (await client.post("/v1/notifications", json=payload, headers=headers)).json()
    clock.advance(hours=25)
    second = await (await client.post("/v1/notifications", json=payload, headers=headers)).json()
    assert first["id"] != second["id"]


async def test_batch_results_in_order_with_problems(client: Client) -> None:
    await register(client)
    response = await client.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "ok"},
                {"user_id": "u1", "app": "nope", "body": "x"},
                {
                    "user_id": "u1",
                    "app": "demo",
                    "category": "order_shipped",
                    "tier": "promotional",
                    "body": "x",
                },
                {"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "ok"},
            ]
        },
    )
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r.get("status") for r in results] == ["queued", 422, 422, "queued"]
    assert [r.get("code") for r in results[1:3]] == ["unknown_app", "tier_conflict"]


async def test_app_may_be_left_out_with_one_app(
    engine, aiohttp_client, clock: FakeClock, database_url: str
) -> None:
    settings = make_settings(
        database_url,
        apps=[{"id": "solo"}],
        api_keys=[
            {
                "name": "full",
                "key_sha256": sha(FULL_KEY),
                "allowed_tiers": ["transactional"],
                "scopes": ["*"],
            }
        ],
    )
    client = await aiohttp_client(
        create_app(settings, engine=engine, clock=clock), headers=auth(FULL_KEY)
    )
    await register(client, app="solo")
    response = await client.post(
        "/v1/notifications", json={"user_id": "u1", "tier": "transactional", "body": "x"}
    )
    assert response.status == 202
    assert (await response.json())["app"] == "solo"


async def test_expires_at_sets_expiry(client: Client, clock: FakeClock) -> None:
    await register(client)
    expires = (clock.now + timedelta(hours=2)).isoformat()
    body = await (
        await client.post(
            "/v1/notifications",
            json={
                "user_id": "u1",
                "app": "demo",
                "tier": "transactional",
                "body": "x",
                "expires_at": expires,
            },
        )
    ).json()
    assert datetime.fromisoformat(body["expires_at"]) == clock.now + timedelta(hours=2)


async def test_concurrent_sends_respect_the_frequency_cap(client: Client) -> None:
    await register(client)
    await client.put("/v1/users/u1/preferences", json={"promotional": True})
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/notifications",
                json={"user_id": "u1", "app": "demo", "tier": "promotional", "body": str(i)},
            )
            for i in range(6)
        )
    )
    statuses = sorted([(await response.json())["status"] for response in responses])
    assert statuses == ["dropped"] * 4 + ["queued"] * 2  # the cap is 2 a day


async def test_forgetting_a_user_forgets_the_answers_that_would_replay_them(
    client: Client,
) -> None:
    await register(client)
    body = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"}
    headers = {"Idempotency-Key": "order-42"}
    first = await (await client.post("/v1/notifications", json=body, headers=headers)).json()
    batch = {"notifications": [body, {**body, "user_id": "u2"}]}
    in_batch = await client.post(
        "/v1/notifications/batch", json=batch, headers=headers | {"Idempotency-Key": "batch-7"}
    )
    assert in_batch.status == 200

    assert (await client.delete("/v1/users/u1")).status == 204

    retry = await client.post("/v1/notifications", json=body, headers=headers)
    assert retry.status == 202 and "Idempotent-Replayed" not in retry.headers
    assert (await retry.json())["id"] != first["id"]  # a new request: u1 no longer exists
    assert (await retry.json())["reason"] == "no_active_devices"
    batch_retry = await client.post(
        "/v1/notifications/batch", json=batch, headers={"Idempotency-Key": "batch-7"}
    )
    assert "Idempotent-Replayed" not in batch_retry.headers  # it held one of u1's too
