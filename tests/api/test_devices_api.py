"""Device registration, listing, unregistering and user erasure through the HTTP API."""

from __future__ import annotations

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
