"""iOS provisional authorization: notifications reach the device (quietly, in Notification
Center), and the app may still ask the user for full permission."""

from __future__ import annotations

import pytest

from tests.pipeline.conftest import Pipeline


@pytest.mark.parametrize("tier", ["transactional", "behavioral"])
async def test_a_provisional_device_is_delivered_to(pipeline: Pipeline, tier: str) -> None:
    provisional = await pipeline.register(permission="provisional")
    denied = await pipeline.register(permission="denied")
    notification = await pipeline.send(tier=tier)

    await pipeline.deliver()

    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
    assert [(d["device_id"], d["status"]) for d in body["deliveries"]] == [
        (provisional["id"], "sent")
    ]
    assert [request.token for request in pipeline.apns.requests] == [provisional["token"]]
    assert denied["token"] not in {request.token for request in pipeline.apns.requests}


async def test_the_soft_ask_still_offers_full_permission_to_a_provisional_user(
    pipeline: Pipeline,
) -> None:
    device = await pipeline.register(permission="provisional")
    response = await pipeline.client.post(
        "/v1/users/u1/permission-events",
        json={"event": "value_moment", "device_id": device["id"]},
    )
    assert response.status == 201, await response.text()

    answer = await pipeline.client.get("/v1/users/u1/soft-ask?platform=ios")

    assert (await answer.json()) == {
        "action": "show_soft_ask",
        "reason": "eligible",
        "retry_at": None,
    }
