"""``pushgate notifications explain``: the decisions recorded on a notification, told in plain
sentences in the user's local time, and as JSON, against a real SQLite file and PostgreSQL.

The records are made by the same code the gateway runs (``decide_and_explain`` and
``decision_record``), at instants the test picks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.models import Delivery, Notification
from gateway.services.acceptance import decision_record
from policies import PolicySettings, Tier, UserFacts, decide_and_explain
from tests.cli.conftest import Sessions, invoke

POLICY = PolicySettings()
PARIS = ZoneInfo("Europe/Paris")
# 2026-03-01 01:14 UTC is 02:14 in Paris (CET, UTC+1).
NIGHT = datetime(2026, 3, 1, 1, 14, tzinfo=UTC)
ALICE = UserFacts(user_id="alice", timezone="Europe/Paris", active_devices=2)


def record(
    now: datetime,
    tier: Tier,
    user: UserFacts,
    *,
    replaces: dict[str, Any] | None = None,
    scheduled_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> tuple[Any, dict[str, Any]]:
    decision, explanation = decide_and_explain(
        now,
        tier,
        expires_at or now + timedelta(days=1),
        user,
        POLICY,
        scheduled_at=scheduled_at,
    )
    return decision, decision_record(decision, explanation, now=now, replaces=replaces)


async def store(sessions: Sessions, deliveries: list[str] | None = None, **fields: Any) -> str:
    values: dict[str, Any] = {
        "user_id": "alice",
        "app": "shop",
        "tier": "behavioral",
        "category": "cart_reminder",
        "classified_by": "category",
        "status": "sent",
        "title": "Your cart",
        "sender": "growth",
        "expires_at": NIGHT + timedelta(days=1),
        "created_at": NIGHT,
        "updated_at": NIGHT,
        **fields,
    }
    async with sessions() as session, session.begin():
        notification = Notification(**values)
        session.add(notification)
        await session.flush()
        for platform in deliveries or []:
            session.add(
                Delivery(
                    notification_id=notification.id,
                    device_id=f"device-{platform}",
                    platform=platform,
                    app=notification.app,
                    status="sent",
                    attempts=1,
                    next_attempt_at=NIGHT,
                    created_at=NIGHT,
                    updated_at=NIGHT,
                )
            )
    return notification.id


async def test_a_night_deferral_and_its_release(config: Path, sessions: Sessions) -> None:
    deferral, first = record(NIGHT, Tier.BEHAVIORAL, ALICE)
    released_at = deferral.until
    _, latest = record(released_at, Tier.BEHAVIORAL, ALICE, replaces=first)
    notification_id = await store(
        sessions, ["ios", "android"], decision=latest, deliver_at=released_at
    )

    result = await invoke(config, "notifications", "explain", notification_id)

    assert result.exit_code == 0, result.output
    released = released_at.astimezone(PARIS).strftime("%H:%M")
    assert released.startswith("08:")
    lines = result.output.splitlines()
    assert lines[0].startswith(f"Notification {notification_id} to user alice (app shop)")
    assert "behavioral, category cart_reminder, from key growth" in lines[0]
    assert lines[1].startswith(
        "Deferred: quiet hours 22:00\N{EN DASH}08:00 in Europe/Paris (from the user's "
        "preferences); it was 02:14 there (2026-03-01 01:14:00 UTC), so it waits until "
        f"{released} local"
    )
    assert lines[2] == (
        f"Released {released} local ({released_at.strftime('%Y-%m-%d %H:%M:%S')} UTC): queued "
        "for delivery: outside quiet hours 22:00\N{EN DASH}08:00."
    )
    assert lines[3] == "Now: sent; deliveries 2 sent."

    as_json = await invoke(config, "notifications", "explain", notification_id, "--json")
    document = json.loads(as_json.output)
    assert [d["rule"] for d in document["decisions"]] == ["quiet_hours", "send"]
    assert document["decision"]["rule"] == "send"
    assert document["decisions"][0]["deliver_at"] == released_at.isoformat()
    assert document["decisions"][0]["local_time"] == "2026-03-01T02:14:00+01:00"
    assert "earlier" not in document["decision"]


async def test_a_schedule_that_followed_its_user(config: Path, sessions: Sessions) -> None:
    """Scheduled for 09:00 in Paris; the user moved to New York, where 09:00 came later."""
    paris_nine = datetime(2026, 3, 2, 8, tzinfo=UTC)
    new_york_nine = datetime(2026, 3, 2, 14, tzinfo=UTC)
    expires_at = new_york_nine + timedelta(days=1)
    _, accepted = record(
        NIGHT, Tier.TRANSACTIONAL, ALICE, scheduled_at=paris_nine, expires_at=expires_at
    )
    moved = UserFacts(user_id="alice", timezone="America/New_York", active_devices=1)
    _, rescheduled = record(
        paris_nine,
        Tier.TRANSACTIONAL,
        moved,
        replaces=accepted,
        scheduled_at=new_york_nine,
        expires_at=expires_at,
    )
    notification_id = await store(
        sessions,
        tier="transactional",
        category=None,
        classified_by="tier",
        status="deferred",
        reason="scheduled",
        decision=rescheduled,
        deliver_at=new_york_nine,
        send_at=new_york_nine,
        send_at_local="09:00",
        scheduled_wall_time="2026-03-02T09:00",
        scheduled_zone="America/New_York",
        expires_at=expires_at,
    )

    result = await invoke(config, "notifications", "explain", notification_id)

    assert result.exit_code == 0, result.output
    text = result.output
    assert "scheduled for 09:00 in the user's local time" in text
    assert (
        "Scheduled: it waits until 2026-03-02 09:00 local; it was 02:14 in Europe/Paris (from "
        "the user's preferences) at 2026-03-01 01:14:00 UTC. Quiet hours and caps are checked "
        "when it is released." in text
    )
    # released at 09:00 in Paris, which is 03:00 in New York
    assert (
        "Released 03:00 local (2026-03-02 08:00:00 UTC), the user now in America/New_York "
        "(from the user's preferences): rescheduled: it waits until 09:00 local. Quiet hours "
        "and caps are checked when it is released." in text
    )
    assert text.rstrip().endswith(
        "Now: deferred (scheduled), due 09:00 local (2026-03-02 14:00:00 UTC)."
    )


async def test_drops_and_what_happened_after_the_decision(
    config: Path,
    sessions: Sessions,
) -> None:
    opted_out = UserFacts(user_id="bob", behavioral_opt_in=False, active_devices=1)
    _, consent = record(NIGHT, Tier.BEHAVIORAL, opted_out)
    dropped = await store(
        sessions, user_id="bob", status="dropped", reason="opted_out", decision=consent
    )
    _, deferral = record(NIGHT, Tier.BEHAVIORAL, ALICE)
    superseded = await store(
        sessions,
        status="dropped",
        reason="superseded",
        collapse_key="cart",
        decision=deferral,
        updated_at=NIGHT + timedelta(minutes=20),
    )
    legacy = await store(sessions, status="sent", decision=None)

    text = (await invoke(config, "notifications", "explain", dropped)).output
    assert (
        "Dropped: the user opted out of behavioral notifications; it was 01:14 in UTC (the "
        "gateway's default: the user set none and no device reported one) at 2026-03-01 "
        "01:14:00 UTC." in text
    )
    assert "Now: dropped (opted_out); nothing was sent." in text

    text = (await invoke(config, "notifications", "explain", superseded)).output
    assert "Deferred: quiet hours" in text
    assert (
        "Now: dropped, superseded at 2026-03-01 01:34:00 UTC by a newer notification with "
        "collapse key 'cart'" in text
    )

    text = (await invoke(config, "notifications", "explain", legacy)).output
    assert "No decision is on record" in text

    missing = await invoke(config, "notifications", "explain", "no-such-id")
    assert missing.exit_code == 1
