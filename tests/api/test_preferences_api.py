"""GET/PUT/PATCH /v1/users/{id}/preferences."""

from __future__ import annotations

import asyncio

from tests.api.conftest import Client


async def test_defaults_without_a_row(client: Client) -> None:
    body = await (await client.get("/v1/users/u9/preferences")).json()
    assert body == {
        "user_id": "u9",
        "timezone": None,
        "behavioral": True,
        "promotional": False,
        "quiet_hours": None,
        "effective_quiet_hours": {"start": "22:00", "end": "08:00"},
        "updated_at": None,
    }


async def test_put_replaces_and_patch_merges(client: Client) -> None:
    put = await client.put(
        "/v1/users/u1/preferences",
        json={
            "timezone": "Asia/Kathmandu",
            "promotional": True,
            "quiet_hours": {"start": "23:30", "end": "07:15"},
        },
    )
    assert put.status == 200
    body = await put.json()
    assert body["quiet_hours"] == {"start": "23:30", "end": "07:15"}
    assert body["effective_quiet_hours"] == body["quiet_hours"]
    patched = await (
        await client.patch("/v1/users/u1/preferences", json={"behavioral": False})
    ).json()
    assert (patched["timezone"], patched["promotional"], patched["behavioral"]) == (
        "Asia/Kathmandu",
        True,
        False,
    )
    assert patched["quiet_hours"] == {"start": "23:30", "end": "07:15"}
    replaced = await (await client.put("/v1/users/u1/preferences", json={})).json()
    assert (replaced["timezone"], replaced["promotional"], replaced["quiet_hours"]) == (
        None,
        False,
        None,
    )
    reset = await (
        await client.patch("/v1/users/u1/preferences", json={"quiet_hours": None})
    ).json()
    assert reset["effective_quiet_hours"] == {"start": "22:00", "end": "08:00"}


async def test_concurrent_first_writes_for_a_new_user_all_succeed(client: Client) -> None:
    responses = await asyncio.gather(
        *(
            client.patch("/v1/users/new-user/preferences", json={"promotional": True})
            for _ in range(4)
        )
    )
    assert [response.status for response in responses] == [200] * 4
    body = await (await client.get("/v1/users/new-user/preferences")).json()
    assert body["promotional"] is True
