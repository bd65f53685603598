"""Deferral and release end to end (release, collapse, cancel): a notification
sent at night in the user's zone waits, and at ``deliver_at`` it is judged again with the state
of that moment before anything reaches a simulator."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.db import transaction
from gateway.models import Notification
from gateway.services.release import RELEASE_RETRY_DELAY
from gateway.services.snapshot import lock_users
from tests.pipeline.conftest import TOKYO, Pipeline


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def deferred_for_tokyo_user(pipeline: Pipeline, **fields: Any) -> dict[str, Any]:
    """A notification for u1 (in Tokyo, where the fake clock's 14:00 UTC is 23:00) that the
    quiet hours defer until 08:00 there."""
    notification = await pipeline.send(**fields)
    assert (notification["status"], notification["reason"]) == ("deferred", "quiet_hours")
    return notification


async def test_behavioral_at_night_is_delivered_when_released(pipeline: Pipeline) -> None:
    ios = await pipeline.register(timezone=TOKYO)
    android = await pipeline.register(platform="android")
    notification = await deferred_for_tokyo_user(pipeline, tier="behavioral")
    deliver_at = instant(notification["deliver_at"])
    # 08:00 in Tokyo is 23:00 UTC, plus a per-user spread of under 30 minutes
    morning = pipeline.clock.now.replace(hour=23, minute=0)
    assert morning <= deliver_at < morning + timedelta(minutes=30)

    assert await pipeline.release_and_deliver() == 0  # not due: nothing is sent early
    pipeline.clock.now = deliver_at - timedelta(seconds=1)
    assert await pipeline.release_and_deliver() == 0
    assert pipeline.apns.requests == [] and pipeline.fcm.sends == []

    pipeline.clock.now = deliver_at
    assert await pipeline.release_and_deliver() == 1

    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("sent", None)
    deliveries = {d["device_id"]: d for d in body["deliveries"]}
    assert deliveries.keys() == {ios["id"], android["id"]}
    assert all(d["status"] == "sent" and d["attempts"] == 1 for d in deliveries.values())
    [apns_request] = pipeline.apns.requests
    assert apns_request.token == ios["token"]
    assert deliveries[ios["id"]]["provider_id"]
    [fcm_message] = pipeline.fcm.delivered
    assert fcm_message["token"] == android["token"]
    assert deliveries[android["id"]]["provider_id"].startswith("projects/")


async def test_consent_withdrawn_overnight_drops_at_release(pipeline: Pipeline) -> None:
    await pipeline.register(timezone=TOKYO)
    await pipeline.preferences(promotional=True)
    notification = await deferred_for_tokyo_user(pipeline, tier="promotional")

    await pipeline.preferences(promotional=False)
    pipeline.clock.now = instant(notification["deliver_at"])
    assert await pipeline.release_and_deliver() == 1

    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("dropped", "not_opted_in")
    assert body["deliveries"] == []
    assert pipeline.apns.requests == []


async def test_device_pruned_overnight_by_provider_feedback(pipeline: Pipeline) -> None:
    device = await pipeline.register(timezone=TOKYO)
    deferred = await deferred_for_tokyo_user(pipeline, tier="behavioral")

    # At night a transactional message goes out at once; Apple says the token is gone.
    pipeline.clock.advance(hours=1)
    pipeline.apns.unregister(device["token"], since=pipeline.clock.now - timedelta(minutes=5))
    urgent = await pipeline.send(tier="transactional")
    assert urgent["status"] == "queued"
    await pipeline.deliver()
    assert (await pipeline.devices())[device["token"]]["status"] == "invalid"

    pipeline.clock.now = instant(deferred["deliver_at"])
    assert await pipeline.release_and_deliver() == 1
    body = await pipeline.notification(deferred["id"])
    assert (body["status"], body["reason"]) == ("dropped", "no_active_devices")
    assert len(pipeline.apns.requests) == 1  # only the transactional one was attempted


async def test_device_unregistered_overnight(pipeline: Pipeline) -> None:
    device = await pipeline.register(timezone=TOKYO)
    notification = await deferred_for_tokyo_user(pipeline, tier="behavioral")

    response = await pipeline.client.delete(f"/v1/devices/{device['id']}")
    assert response.status == 204
    pipeline.clock.now = instant(notification["deliver_at"])
    assert await pipeline.release_and_deliver() == 1

    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("dropped", "no_active_devices")
    assert pipeline.apns.requests == []


async def test_cap_reached_at_release(pipeline: Pipeline) -> None:
    """The promotional cap (2 a day) is not checked while deferred: three promos wait for the
    same morning, and the release lets two through."""
    await pipeline.register(timezone=TOKYO)
    await pipeline.preferences(promotional=True)
    promos = [await deferred_for_tokyo_user(pipeline, tier="promotional") for _ in range(3)]

    pipeline.clock.now = max(instant(promo["deliver_at"]) for promo in promos)
    assert await pipeline.release_and_deliver() == 3

    outcomes = sorted(
        [
            (body["status"], body["reason"])
            for body in [await pipeline.notification(p["id"]) for p in promos]
        ],
        key=str,
    )
    assert outcomes == [("dropped", "frequency_capped"), ("sent", None), ("sent", None)]
    assert len(pipeline.apns.requests) == 2


async def test_user_moved_time_zone_overnight_is_deferred_again(pipeline: Pipeline) -> None:
    await pipeline.register(timezone=TOKYO)
    notification = await deferred_for_tokyo_user(pipeline, tier="behavioral")

    # 23:00 UTC, Tokyo's morning, is 04:30 in Kolkata: still night for the user who moved
    await pipeline.preferences(timezone="Asia/Kolkata")
    pipeline.clock.now = instant(notification["deliver_at"])
    assert await pipeline.release_and_deliver() == 1

    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("deferred", "quiet_hours")
    kolkata_morning = (pipeline.clock.now + timedelta(days=1)).replace(hour=2, minute=30)
    deliver_at = instant(body["deliver_at"])
    assert kolkata_morning <= deliver_at < kolkata_morning + timedelta(minutes=30)
    assert pipeline.apns.requests == []

    pipeline.clock.now = deliver_at
    assert await pipeline.release_and_deliver() == 1
    assert (await pipeline.notification(notification["id"]))["status"] == "sent"
    assert len(pipeline.apns.requests) == 1


async def test_expires_before_release(pipeline: Pipeline) -> None:
    """Released late (no worker ran overnight), after its expiry: ``expired``, never sent."""
    await pipeline.register(timezone=TOKYO)
    notification = await deferred_for_tokyo_user(pipeline, tier="behavioral", ttl_seconds=10 * 3600)
    expires_at = instant(notification["expires_at"])
    assert expires_at > instant(notification["deliver_at"])

    pipeline.clock.now = expires_at + timedelta(minutes=1)
    assert await pipeline.release_and_deliver() == 1
    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("expired", "expired")
    assert pipeline.apns.requests == []


async def test_collapse_key_supersedes_the_deferred_one(pipeline: Pipeline) -> None:
    await pipeline.register(timezone=TOKYO)
    older = await deferred_for_tokyo_user(pipeline, tier="behavioral", collapse_key="cart")
    pipeline.clock.advance(minutes=20)
    newer = await deferred_for_tokyo_user(
        pipeline, tier="behavioral", collapse_key="cart", body="3 items"
    )

    body = await pipeline.notification(older["id"])
    assert (body["status"], body["reason"]) == ("dropped", "superseded")
    pipeline.clock.now = instant(newer["deliver_at"])
    assert await pipeline.release_and_deliver() == 1

    assert (await pipeline.notification(newer["id"]))["status"] == "sent"
    [request] = pipeline.apns.requests
    assert request.headers["apns-collapse-id"] == "cart"
    assert request.payload is not None
    assert request.payload["aps"]["alert"]["body"] == "3 items"


async def test_cancel_deferred_and_queued(pipeline: Pipeline) -> None:
    await pipeline.register(timezone=TOKYO)
    deferred = await deferred_for_tokyo_user(pipeline, tier="behavioral")
    queued = await pipeline.send(tier="transactional")
    assert queued["status"] == "queued"

    for notification in (deferred, queued):
        response = await pipeline.client.delete(f"/v1/notifications/{notification['id']}")
        assert response.status == 200, await response.text()
        assert (await response.json())["status"] == "cancelled"

    await pipeline.deliver()
    pipeline.clock.now = instant(deferred["deliver_at"])
    assert await pipeline.release_and_deliver() == 0
    assert pipeline.apns.requests == []

    body = await pipeline.notification(queued["id"])
    assert body["status"] == "cancelled"
    [delivery] = body["deliveries"]
    assert (delivery["status"], delivery["error"], delivery["attempts"]) == (
        "failed",
        "cancelled",
        0,
    )
    assert (await pipeline.notification(deferred["id"]))["status"] == "cancelled"


async def test_a_notification_that_cannot_be_released_does_not_hold_back_the_rest(
    pipeline: Pipeline,
) -> None:
    await pipeline.register(timezone=TOKYO)
    broken = await deferred_for_tokyo_user(pipeline, tier="behavioral", body="broken")
    fine = await deferred_for_tokyo_user(pipeline, tier="behavioral", body="fine")
    async with pipeline.sessions() as session, session.begin():
        # a row no code path writes: its tier is unknown, so deciding it raises
        await session.execute(
            sa.update(Notification).where(col(Notification.id) == broken["id"]).values(tier="bogus")
        )
    pipeline.clock.now = max(instant(broken["deliver_at"]), instant(fine["deliver_at"]))

    assert await pipeline.release_and_deliver() == 1

    assert (await pipeline.notification(fine["id"]))["status"] == "sent"
    async with pipeline.sessions() as session:
        row = await session.get(Notification, broken["id"])
    assert row is not None and row.status == "deferred"
    assert row.deliver_at == pipeline.clock.now + RELEASE_RETRY_DELAY  # retried later


async def test_release_leaves_a_user_being_accepted_for_to_the_next_run(
    pipeline: Pipeline,
) -> None:
    """On PostgreSQL an acceptance holds its user's lock until it commits; the release job must
    neither count that user under the cap beside it nor wait for it (it holds row locks)."""
    if pipeline.settings.database.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: there is no side-by-side acceptance")
    await pipeline.register(timezone=TOKYO)
    notification = await deferred_for_tokyo_user(pipeline, tier="behavioral")
    pipeline.clock.now = instant(notification["deliver_at"])

    async with transaction(pipeline.sessions) as accepting:
        await lock_users(accepting, ["u1"])  # an acceptance for u1, not yet committed
        assert await pipeline.release_and_deliver() == 0
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "deferred"

    assert await pipeline.release_and_deliver() == 1  # the next run, once it has committed
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "sent"
