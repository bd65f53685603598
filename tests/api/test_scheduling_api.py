"""Scheduled sends at acceptance, through the real app on both databases: ``send_at`` and
``send_at_local`` (in the user's zone, DST gaps and folds included), their refusals, expiry
counted from the scheduled instant, and the checks made at once (consent, devices)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import create_app
from tests.api.conftest import FULL_KEY, TX_KEY, Client, FakeClock, auth, make_settings, register

# The clock fixture: 2026-06-15 12:00 UTC, which is 14:00 in Paris (CEST, UTC+2).
PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def post(client: Client, **fields: Any) -> tuple[int, dict[str, Any]]:
    body = {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "x", **fields}
    response = await client.post("/v1/notifications", json=body)
    result: dict[str, Any] = await response.json()
    return response.status, result


async def accepted(client: Client, **fields: Any) -> dict[str, Any]:
    status, body = await post(client, **fields)
    assert status == 202, body
    return body


async def refused(client: Client, field: str, **fields: Any) -> dict[str, Any]:
    status, body = await post(client, **fields)
    assert status == 422, body
    assert body["code"] == "invalid_request"
    assert any(error["field"].endswith(field) for error in body.get("errors", [])), body
    return body


# --- send_at: an instant ---------------------------------------------------------------------


async def test_send_at_waits_for_its_instant_with_expiry_counted_from_it(
    client: Client, clock: FakeClock
) -> None:
    await register(client, timezone=PARIS)
    send_at = clock.now + timedelta(hours=5)
    body = await accepted(client, send_at=send_at.isoformat(), ttl_seconds=600)

    assert (body["status"], body["reason"]) == ("deferred", "scheduled")
    assert at(body["deliver_at"]) == at(body["send_at"]) == send_at  # no release spread
    assert body["send_at_local"] is None
    assert at(body["expires_at"]) == send_at + timedelta(seconds=600)
    assert body["decision"] == {
        "zone": PARIS,
        "zone_source": "device",
        "local_time": "2026-06-15T14:00:00+02:00",
        "quiet_hours": None,
        "rule": "scheduled",
    }
    detail = await (await client.get(f"/v1/notifications/{body['id']}")).json()
    assert detail["deliveries"] == []
    assert (detail["send_at"], detail["decision"]) == (body["send_at"], body["decision"])


async def test_send_at_in_another_offset_is_the_same_instant(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    body = await accepted(client, send_at="2026-06-15T19:30:00+05:30")  # 14:00 UTC
    assert at(body["send_at"]) == datetime(2026, 6, 15, 14, tzinfo=UTC)
    # the default TTL (a day for transactional) starts at the scheduled instant
    assert at(body["expires_at"]) == datetime(2026, 6, 16, 14, tzinfo=UTC)


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=-1)])
async def test_send_at_at_or_before_now_is_as_if_absent(
    client: Client, clock: FakeClock, offset: timedelta
) -> None:
    await register(client)
    body = await accepted(client, send_at=(clock.now + offset).isoformat())
    assert (body["status"], body["send_at"]) == ("queued", None)
    assert body["decision"]["rule"] == "send"
    assert at(body["expires_at"]) == clock.now + timedelta(days=1)


async def test_send_at_must_carry_an_offset(client: Client) -> None:
    await register(client)
    await refused(client, "send_at", send_at="2026-06-16T09:00:00")


async def test_expires_at_not_after_send_at_is_refused(client: Client, clock: FakeClock) -> None:
    await register(client)
    send_at = clock.now + timedelta(hours=2)
    body = await refused(
        client, "expires_at", send_at=send_at.isoformat(), expires_at=send_at.isoformat()
    )
    assert "scheduled moment" in body["detail"]
    later = await accepted(
        client,
        send_at=send_at.isoformat(),
        expires_at=(send_at + timedelta(seconds=1)).isoformat(),
    )
    assert later["status"] == "deferred"


async def test_send_at_beyond_the_horizon_is_refused(client: Client, clock: FakeClock) -> None:
    await register(client)
    horizon = clock.now + timedelta(days=365)
    assert (await accepted(client, send_at=horizon.isoformat()))["status"] == "deferred"
    body = await refused(client, "send_at", send_at=(horizon + timedelta(seconds=1)).isoformat())
    assert "365 days" in body["detail"]


async def test_the_horizon_is_configurable(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    clock: FakeClock,
    database_url: str,
) -> None:
    settings = make_settings(database_url, policy={"max_schedule_days": 7})
    client = await aiohttp_client(
        create_app(settings, engine=engine, clock=clock), headers=auth(FULL_KEY)
    )
    await register(client, timezone=PARIS)
    await refused(client, "send_at", send_at=(clock.now + timedelta(days=8)).isoformat())
    await refused(client, "send_at_local", send_at_local="2026-06-23T09:00")
    assert (await accepted(client, send_at_local="2026-06-22T09:00"))["status"] == "deferred"


async def test_both_send_at_and_send_at_local_is_refused(client: Client, clock: FakeClock) -> None:
    await register(client)
    status, body = await post(
        client, send_at=(clock.now + timedelta(hours=1)).isoformat(), send_at_local="09:00"
    )
    assert (status, body["code"]) == (422, "invalid_request")
    assert "not both" in body["detail"]


# --- send_at_local: a wall time in the user's zone -------------------------------------------


async def test_send_at_local_reads_the_users_zone_from_preferences_first(client: Client) -> None:
    await register(client, timezone=NEW_YORK)
    await client.put("/v1/users/u1/preferences", json={"timezone": PARIS})
    # 14:00 in Paris: 09:00 today is past, so tomorrow's, 07:00 UTC; 15:00 is still today.
    tomorrow = await accepted(client, send_at_local="09:00")
    assert (tomorrow["status"], tomorrow["reason"]) == ("deferred", "scheduled")
    assert at(tomorrow["send_at"]) == at(tomorrow["deliver_at"]) == at("2026-06-16T07:00:00Z")
    assert tomorrow["send_at_local"] == "09:00"
    assert tomorrow["decision"]["zone"] == PARIS
    assert tomorrow["decision"]["zone_source"] == "preferences"
    today = await accepted(client, send_at_local="15:00")
    assert at(today["send_at"]) == at("2026-06-15T13:00:00Z")


async def test_send_at_local_falls_back_to_the_device_then_the_default_zone(
    client: Client,
) -> None:
    await register(client, user_id="traveller", timezone=NEW_YORK)
    # 08:00 in New York (EDT): 09:00 is today, 13:00 UTC
    body = await accepted(client, user_id="traveller", send_at_local="09:00")
    assert at(body["send_at"]) == at("2026-06-15T13:00:00Z")
    assert body["decision"]["zone_source"] == "device"
    await register(client, user_id="nowhere", token="c" * 64)
    # the configured default, UTC: 12:00 now, so 09:00 is tomorrow
    body = await accepted(client, user_id="nowhere", send_at_local="09:00")
    assert at(body["send_at"]) == at("2026-06-16T09:00:00Z")
    assert (body["decision"]["zone"], body["decision"]["zone_source"]) == ("UTC", "default")


async def test_a_dated_send_at_local_expires_from_its_instant(client: Client) -> None:
    await register(client, timezone=PARIS)
    body = await accepted(client, send_at_local="2026-07-01T09:30", ttl_seconds=3600)
    assert at(body["send_at"]) == at("2026-07-01T07:30:00Z")
    assert at(body["expires_at"]) == at("2026-07-01T08:30:00Z")
    assert body["send_at_local"] == "2026-07-01T09:30"
    await refused(
        client, "expires_at", send_at_local="2026-07-01T09:30", expires_at="2026-07-01T07:30:00Z"
    )


@pytest.mark.parametrize(
    "send_at_local",
    [
        "2026-06-15T14:00",  # exactly now in Paris: not after now
        "2026-06-15T13:59",  # a minute ago there
        "2026-06-14T20:00",
    ],
)
async def test_a_dated_send_at_local_not_after_now_is_refused(
    client: Client, send_at_local: str
) -> None:
    await register(client, timezone=PARIS)
    body = await refused(client, "send_at_local", send_at_local=send_at_local)
    assert "not after now" in body["detail"] and PARIS in body["detail"]


async def test_send_at_local_beyond_the_horizon_is_refused(client: Client) -> None:
    await register(client, timezone=PARIS)
    # 365 days after 2026-06-15 14:00 Paris is 2027-06-15 14:00 Paris
    assert (await accepted(client, send_at_local="2027-06-15T14:00"))["status"] == "deferred"
    await refused(client, "send_at_local", send_at_local="2027-06-15T14:01")
    await refused(client, "send_at_local", send_at_local="9999-12-31T23:59")


@pytest.mark.parametrize(
    "send_at_local", ["9:00", "24:00", "09:60", "2026-02-30T09:00", "09:00+02:00", "tomorrow"]
)
async def test_a_malformed_send_at_local_is_refused(client: Client, send_at_local: str) -> None:
    await register(client)
    await refused(client, "send_at_local", send_at_local=send_at_local)


async def test_a_wall_time_in_a_spring_forward_gap_goes_at_the_transition(
    client: Client, clock: FakeClock
) -> None:
    """New York skips 02:00-03:00 on 2026-03-08: 02:30 never shows, and the send goes when the
    clock jumps from 02:00 EST to 03:00 EDT, 07:00 UTC."""
    clock.now = datetime(2026, 3, 7, 12, tzinfo=UTC)
    await register(client, timezone=NEW_YORK)
    body = await accepted(client, send_at_local="2026-03-08T02:30")
    assert at(body["send_at"]) == at(body["deliver_at"]) == at("2026-03-08T07:00:00Z")
    # "HH:MM" on the night itself resolves the same way
    clock.now = datetime(2026, 3, 8, 6, tzinfo=UTC)  # 01:00 EST
    body = await accepted(client, send_at_local="02:30")
    assert at(body["send_at"]) == at("2026-03-08T07:00:00Z")


async def test_a_wall_time_in_a_fall_back_fold_goes_at_its_first_occurrence(
    client: Client, clock: FakeClock
) -> None:
    """New York shows 01:00-02:00 twice on 2026-11-01 (EDT, then EST): 01:30 is first at
    05:30 UTC, then again at 06:30 UTC; the send goes at the first."""
    clock.now = datetime(2026, 10, 31, 12, tzinfo=UTC)
    await register(client, timezone=NEW_YORK)
    body = await accepted(client, send_at_local="2026-11-01T01:30")
    assert at(body["send_at"]) == at("2026-11-01T05:30:00Z")
    # between the two occurrences a dated 01:30 is already past: refused, not moved
    clock.now = datetime(2026, 11, 1, 6, tzinfo=UTC)  # 01:00 EST, the second time through
    await refused(client, "send_at_local", send_at_local="2026-11-01T01:30")


# --- what acceptance checks at once ----------------------------------------------------------


async def test_consent_and_devices_are_checked_at_acceptance(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    later = (clock.now + timedelta(days=2)).isoformat()
    promo = await accepted(client, tier="promotional", send_at=later)
    assert (promo["status"], promo["reason"]) == ("dropped", "not_opted_in")
    assert promo["decision"]["rule"] == "consent"
    nobody = await accepted(client, user_id="nobody", send_at_local="09:00")
    assert (nobody["status"], nobody["reason"]) == ("dropped", "no_active_devices")
    assert nobody["decision"]["rule"] == "devices"
    assert nobody["send_at_local"] == "09:00"


async def test_caller_permission_is_checked_before_the_schedule(
    client: Client, clock: FakeClock
) -> None:
    await register(client)
    response = await client.post(
        "/v1/notifications",
        json={
            "user_id": "u1",
            "app": "demo",
            "tier": "promotional",
            "body": "x",
            "send_at_local": "2026-06-15T09:00",
        },
        headers=auth(TX_KEY),
    )
    assert (response.status, (await response.json())["code"]) == (403, "tier_not_allowed")


async def test_a_batch_refuses_only_the_item_whose_local_time_is_past(client: Client) -> None:
    await register(client, timezone=PARIS)
    response = await client.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                {"user_id": "u1", "app": "demo", "tier": "transactional", "body": "now"},
                {"user_id": "u1", "app": "demo", "body": "x", "send_at_local": "2026-06-15T10:00"},
                {
                    "user_id": "u1",
                    "app": "demo",
                    "tier": "transactional",
                    "body": "later",
                    "send_at_local": "2026-06-15T18:00",
                },
                {"user_id": "u1", "app": "demo", "body": "x", "send_at_local": "bogus"},
            ]
        },
    )
    assert response.status == 200
    results = (await response.json())["results"]
    assert [r.get("status") for r in results] == ["queued", 422, "deferred", 422]
    assert results[1]["errors"][0]["field"] == "notifications.1.send_at_local"
    assert "not after now" in results[1]["detail"]
    assert results[3]["errors"][0]["field"] == "notifications.3.send_at_local"
    assert at(results[2]["send_at"]) == at("2026-06-15T16:00:00Z")


async def test_a_refusal_at_store_time_is_not_kept_for_the_idempotency_key(
    client: Client,
) -> None:
    await register(client, timezone=PARIS)
    headers = {"Idempotency-Key": "reminder-1"}
    payload = {
        "user_id": "u1",
        "app": "demo",
        "tier": "transactional",
        "body": "x",
        "send_at_local": "2026-06-15T10:00",
    }
    first = await client.post("/v1/notifications", json=payload, headers=headers)
    assert first.status == 422
    # the user's zone changes (Sao Paulo, UTC-3: 09:00 there): the same request is now ahead
    await client.put("/v1/users/u1/preferences", json={"timezone": "America/Sao_Paulo"})
    again = await client.post("/v1/notifications", json=payload, headers=headers)
    assert again.status == 202, await again.text()
    body = await again.json()
    assert at(body["send_at"]) == at("2026-06-15T13:00:00Z")
    replay = await client.post("/v1/notifications", json=payload, headers=headers)
    assert (await replay.json())["id"] == body["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"


# --- collapse and cancel ---------------------------------------------------------------------


async def test_a_newer_notification_supersedes_a_scheduled_one(
    client: Client, clock: FakeClock
) -> None:
    await register(client, timezone=PARIS)
    older = await accepted(client, send_at_local="18:00", collapse_key="digest")
    newer = await accepted(client, send_at_local="19:00", collapse_key="digest")
    assert (newer["status"], newer["reason"]) == ("deferred", "scheduled")
    detail = await (await client.get(f"/v1/notifications/{older['id']}")).json()
    assert (detail["status"], detail["reason"]) == ("dropped", "superseded")
    # the decision stays the one that scheduled it: supersession is not a policy decision
    assert detail["decision"]["rule"] == "scheduled"
    # a notification sent now supersedes a scheduled one too
    now = await accepted(client, collapse_key="digest")
    assert now["status"] == "queued"
    detail = await (await client.get(f"/v1/notifications/{newer['id']}")).json()
    assert (detail["status"], detail["reason"]) == ("dropped", "superseded")


async def test_a_scheduled_notification_can_be_cancelled(client: Client, clock: FakeClock) -> None:
    await register(client)
    body = await accepted(client, send_at=(clock.now + timedelta(days=1)).isoformat())
    response = await client.delete(f"/v1/notifications/{body['id']}")
    assert response.status == 200
    cancelled = await response.json()
    assert (cancelled["status"], cancelled["send_at"]) == ("cancelled", body["send_at"])


# --- every rule's decision, as the API shows it -----------------------------------------------


async def test_the_decision_of_each_rule(client: Client, clock: FakeClock) -> None:
    await register(client, user_id="paris", timezone=PARIS, token="d" * 64)
    await register(client, user_id="sydney", timezone="Australia/Sydney", token="e" * 64)
    await client.put("/v1/users/paris/preferences", json={"promotional": True, "timezone": PARIS})
    await client.put("/v1/users/sydney/preferences", json={"behavioral": False})

    async def decision(**fields: Any) -> dict[str, Any]:
        body = await accepted(client, **fields)
        detail = await (await client.get(f"/v1/notifications/{body['id']}")).json()
        assert detail["decision"] == body["decision"]
        result: dict[str, Any] = body["decision"]
        return result

    paris_day = {
        "zone": PARIS,
        "zone_source": "preferences",
        "local_time": "2026-06-15T14:00:00+02:00",
    }
    window = {"start": "22:00", "end": "08:00"}
    assert await decision(user_id="paris", tier="transactional") == {
        **paris_day,
        "quiet_hours": None,
        "rule": "send",
    }
    assert await decision(user_id="paris", tier="promotional") == {
        **paris_day,
        "quiet_hours": window,
        "rule": "send",
    }
    await decision(user_id="paris", tier="promotional")
    assert await decision(user_id="paris", tier="promotional") == {
        **paris_day,
        "quiet_hours": window,
        "rule": "frequency_cap",
    }
    assert await decision(user_id="paris", tier="promotional", send_at_local="20:00") == {
        **paris_day,
        "quiet_hours": None,
        "rule": "scheduled",
    }
    assert await decision(user_id="nobody") == {
        "zone": "UTC",
        "zone_source": "default",
        "local_time": "2026-06-15T12:00:00Z",
        "quiet_hours": None,
        "rule": "devices",
    }
    # 22:00 in Sydney (AEST, +10): behavioral opted out, then a transactional at night
    sydney_night = {
        "zone": "Australia/Sydney",
        "zone_source": "device",
        "local_time": "2026-06-15T22:00:00+10:00",
    }
    assert await decision(user_id="sydney", tier="behavioral") == {
        **sydney_night,
        "quiet_hours": None,
        "rule": "consent",
    }
    await client.put("/v1/users/sydney/preferences", json={"behavioral": True})
    assert await decision(user_id="sydney", tier="behavioral") == {
        **sydney_night,
        "quiet_hours": window,
        "rule": "quiet_hours",
    }
