"""Device registration, listing, unregistering and user erasure through the HTTP API."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import FCM_TOKEN, IOS_TOKEN, IOS_TOKEN_2, Client, register


async def test_register_then_refresh(client: Client) -> None:
    response = await client.post(
        "/v1/devices",
        json={
            "user_id": "u1",
            "app": "demo",
            "platform": "ios",
            "token": IOS_TOKEN,
            "timezone": "Europe/Paris",
        },
    )
    assert response.status == 201
    first = await response.json()
    assert first["status"] == "active"
    assert first["environment"] == "production"
    again = await client.post(
        "/v1/devices",
        json={
            "user_id": "u1",
            "app": "demo",
            "platform": "ios",
            "token": IOS_TOKEN,
            "locale": "fr-FR",
        },
    )
    assert again.status == 200
    assert (await again.json())["id"] == first["id"]


async def test_a_refresh_without_environment_keeps_a_sandbox_device_on_sandbox(
    client: Client,
) -> None:
    device = await register(client, environment="sandbox")
    assert device["environment"] == "sandbox"
    refreshed = await register(client, locale="fr-FR")  # the app's next launch says nothing
    assert (refreshed["id"], refreshed["environment"]) == (device["id"], "sandbox")
    moved = await register(client, environment="production")  # saying so still changes it
    assert moved["environment"] == "production"


async def test_shared_device_moves_to_new_user(client: Client) -> None:
    device = await register(client)
    moved = await register(client, user_id="u2")
    assert moved["id"] == device["id"]
    assert moved["user_id"] == "u2"
    assert (await (await client.get("/v1/users/u1/devices")).json())["devices"] == []


async def test_replaces_retires_old_token_and_moves_pending_deliveries(client: Client) -> None:
    old = await register(client)
    note = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"},
        )
    ).json()
    new = await register(client, token=IOS_TOKEN_2, replaces=IOS_TOKEN)
    devices = {
        d["id"]: d for d in (await (await client.get("/v1/users/u1/devices")).json())["devices"]
    }
    assert devices[old["id"]]["status"] == "invalid"
    assert devices[old["id"]]["invalid_reason"] == "replaced"
    assert devices[new["id"]]["status"] == "active"
    detail = await (await client.get(f"/v1/notifications/{note['id']}")).json()
    assert [d["device_id"] for d in detail["deliveries"]] == [new["id"]]


async def test_list_and_unregister(client: Client) -> None:
    ios = await register(client)
    await register(client, platform="android", token=FCM_TOKEN)
    listed = (await (await client.get("/v1/users/u1/devices")).json())["devices"]
    assert len(listed) == 2
    assert {"status", "invalid_reason", "last_seen_at"} <= set(listed[0])
    assert (await client.delete(f"/v1/devices/{ios['id']}")).status == 204
    assert (await client.delete(f"/v1/devices/{ios['id']}")).status == 404
    assert len((await (await client.get("/v1/users/u1/devices")).json())["devices"]) == 1


async def test_forget_user(client: Client) -> None:
    await register(client, timezone="Australia/Sydney")
    await client.put("/v1/users/u1/preferences", json={"promotional": True})
    note = await (
        await client.post(
            "/v1/notifications",
            json={"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"},
        )
    ).json()
    assert note["status"] == "deferred"
    assert (await client.delete("/v1/users/u1")).status == 204
    assert (await (await client.get("/v1/users/u1/devices")).json())["devices"] == []
    prefs = await (await client.get("/v1/users/u1/preferences")).json()
    assert prefs["promotional"] is False and prefs["updated_at"] is None
    assert (await client.get(f"/v1/notifications/{note['id']}")).status == 404


async def test_forgetting_a_user_locks_in_the_workers_order(
    client: Client, engine: AsyncEngine
) -> None:
    """Notifications, then their deliveries, then devices: the order the delivery worker
    takes its locks in, so an erasure running beside a worker cannot deadlock with it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: there are no row locks to order")
    await register(client)
    await client.post(
        "/v1/notifications",
        json={"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x"},
    )
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        assert (await client.delete("/v1/users/u1")).status == 204
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)

    def first(predicate: Any) -> int:
        return next(index for index, statement in enumerate(statements) if predicate(statement))

    locks_notifications = first(
        lambda s: s.startswith("select notifications.id") and "for update" in s
    )
    deletes_deliveries = first(lambda s: s.startswith("delete from deliveries"))
    locks_devices = first(lambda s: "from devices" in s and "for update" in s)
    assert locks_notifications < deletes_deliveries < locks_devices
