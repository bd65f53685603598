"""Scheduled sends end to end: accepted now, released at their moment by the scheduler's job,
judged again by every rule then, and delivered to the simulators, on both databases.

The fake clock starts at 14:00 UTC (23:00 in Tokyo) on a date two days ahead of the wall
clock, so expected instants are computed from it with the zone rules, not written out."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import DatabaseConfig
from gateway.db import create_engine
from gateway.runtime import Role, build_runtime
from tests.pipeline.conftest import TOKYO, Pipeline

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def wall_instant(day: date, hour: int, minute: int, zone: str) -> datetime:
    """When the clock in ``zone`` reads ``hour:minute`` on ``day`` (no gap or fold here)."""
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def local_day(now: datetime, zone: str) -> date:
    return now.astimezone(ZoneInfo(zone)).date()


async def scheduled(pipeline: Pipeline, **fields: Any) -> dict[str, Any]:
    notification = await pipeline.send(**fields)
    assert (notification["status"], notification["reason"]) == ("deferred", "scheduled")
    return notification


async def test_a_scheduled_send_goes_at_its_instant_and_not_before(pipeline: Pipeline) -> None:
    await pipeline.register()
    due = pipeline.clock.now + timedelta(hours=3)
    notification = await scheduled(pipeline, tier="transactional", send_at=due.isoformat())
    assert instant(notification["deliver_at"]) == due

    pipeline.clock.now = due - timedelta(seconds=1)
    assert await pipeline.release_and_deliver() == 0
    assert pipeline.apns.requests == []

    pipeline.clock.now = due
    assert await pipeline.release_and_deliver() == 1
    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("sent", None)
    assert [d["status"] for d in body["deliveries"]] == ["sent"]
    # the decision is now the one made at release
    assert body["decision"]["rule"] == "send"
    assert instant(body["decision"]["local_time"]) == due
    assert instant(body["send_at"]) == due


async def test_quiet_hours_apply_again_at_release(pipeline: Pipeline) -> None:
    """23:30 in Tokyo is quiet: a behavioral send scheduled for then waits for 08:00 (plus the
    user's spread), a transactional one goes at 23:30."""
    await pipeline.register(timezone=TOKYO)
    behavioral = await scheduled(pipeline, tier="behavioral", send_at_local="23:30")
    transactional = await scheduled(pipeline, tier="transactional", send_at_local="23:30")
    half_past = wall_instant(local_day(pipeline.clock.now, TOKYO), 23, 30, TOKYO)
    assert instant(behavioral["send_at"]) == instant(transactional["send_at"]) == half_past
    assert behavioral["decision"]["quiet_hours"] is None  # not evaluated yet

    pipeline.clock.now = half_past
    assert await pipeline.release_and_deliver() == 2

    body = await pipeline.notification(behavioral["id"])
    assert (body["status"], body["reason"]) == ("deferred", "quiet_hours")
    morning = wall_instant(local_day(half_past, TOKYO) + timedelta(days=1), 8, 0, TOKYO)
    assert morning <= instant(body["deliver_at"]) < morning + timedelta(minutes=30)
    assert body["decision"] == {
        "zone": TOKYO,
        "zone_source": "device",
        "local_time": half_past.astimezone(ZoneInfo(TOKYO)).isoformat(),
        "quiet_hours": {"start": "22:00", "end": "08:00"},
        "rule": "quiet_hours",
    }
    sent = await pipeline.notification(transactional["id"])
    assert (sent["status"], sent["decision"]["rule"]) == ("sent", "send")
    assert sent["decision"]["quiet_hours"] is None
    assert len(pipeline.apns.requests) == 1

    pipeline.clock.now = instant(body["deliver_at"])
    assert await pipeline.release_and_deliver() == 1
    assert (await pipeline.notification(behavioral["id"]))["status"] == "sent"


async def test_a_user_who_moved_gets_it_at_the_same_wall_time_where_they_are(
    pipeline: Pipeline,
) -> None:
    """Scheduled for 09:00 in Tokyo; by then the user lives in Paris, where 09:00 is still
    hours ahead: it waits for 09:00 in Paris (reason still ``scheduled``)."""
    await pipeline.register()
    await pipeline.preferences(timezone=TOKYO)
    notification = await scheduled(pipeline, tier="transactional", send_at_local="09:00")
    tomorrow = local_day(pipeline.clock.now, TOKYO) + timedelta(days=1)
    tokyo_nine = wall_instant(tomorrow, 9, 0, TOKYO)
    assert instant(notification["send_at"]) == tokyo_nine

    await pipeline.preferences(timezone=PARIS)
    pipeline.clock.now = tokyo_nine
    assert await pipeline.release_and_deliver() == 1

    paris_nine = wall_instant(tomorrow, 9, 0, PARIS)
    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["reason"]) == ("deferred", "scheduled")
    assert instant(body["deliver_at"]) == instant(body["send_at"]) == paris_nine
    assert (body["decision"]["rule"], body["decision"]["zone"]) == ("scheduled", PARIS)
    assert body["send_at_local"] == "09:00"
    assert pipeline.apns.requests == []

    pipeline.clock.now = paris_nine - timedelta(seconds=1)
    assert await pipeline.release_and_deliver() == 0
    pipeline.clock.now = paris_nine
    assert await pipeline.release_and_deliver() == 1
    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["decision"]["rule"]) == ("sent", "send")
    assert len(pipeline.apns.requests) == 1


async def test_a_user_who_moved_to_where_that_time_has_passed_gets_it_now(
    pipeline: Pipeline,
) -> None:
    """Scheduled for 23:00 in New York; the user moved to Tokyo, where 23:00 that day came
    hours earlier: at release it goes at once."""
    await pipeline.register()
    await pipeline.preferences(timezone=NEW_YORK)
    notification = await scheduled(pipeline, tier="transactional", send_at_local="23:00")
    day = local_day(pipeline.clock.now, NEW_YORK)
    new_york_eleven = wall_instant(day, 23, 0, NEW_YORK)

    await pipeline.preferences(timezone=TOKYO)
    pipeline.clock.now = new_york_eleven
    assert await pipeline.release_and_deliver() == 1

    body = await pipeline.notification(notification["id"])
    assert (body["status"], body["decision"]["rule"]) == ("sent", "send")
    assert body["decision"]["zone"] == TOKYO
    # the instant it resolves to in Tokyo, already past when it was released
    assert instant(body["send_at"]) == wall_instant(day, 23, 0, TOKYO)
    assert len(pipeline.apns.requests) == 1


async def test_a_new_runtime_on_the_same_database_releases_what_the_old_one_accepted(
    pipeline: Pipeline, database_url: str
) -> None:
    """Nothing about a schedule lives in memory: after a restart (a new runtime with its own
    engine, worker and policy state) the send is released, and a local-time one still
    follows its user."""
    await pipeline.register()
    await pipeline.preferences(timezone=TOKYO)
    at_instant = await scheduled(
        pipeline,
        tier="transactional",
        send_at=(pipeline.clock.now + timedelta(hours=2)).isoformat(),
    )
    local = await scheduled(pipeline, tier="transactional", send_at_local="09:00")
    await pipeline.preferences(timezone=PARIS)
    tomorrow = local_day(pipeline.clock.now, TOKYO) + timedelta(days=1)

    async with AsyncExitStack() as stack:
        engine = create_engine(DatabaseConfig(url=database_url))
        stack.push_async_callback(engine.dispose)
        restarted = await stack.enter_async_context(
            build_runtime(
                pipeline.settings,
                role=Role.WORKER,
                engine=engine,
                clock=pipeline.clock,
                worker_owner="worker-after-restart",
            )
        )
        assert restarted.jobs is not None and restarted.worker is not None

        pipeline.clock.now += timedelta(hours=2)
        assert await restarted.jobs.release() == 1
        await restarted.worker.run_round()
        assert (await pipeline.notification(at_instant["id"]))["status"] == "sent"

        pipeline.clock.now = wall_instant(tomorrow, 9, 0, TOKYO)
        assert await restarted.jobs.release() == 1
        body = await pipeline.notification(local["id"])
        assert (body["status"], body["reason"]) == ("deferred", "scheduled")
        assert instant(body["deliver_at"]) == wall_instant(tomorrow, 9, 0, PARIS)

        pipeline.clock.now = wall_instant(tomorrow, 9, 0, PARIS)
        assert await restarted.jobs.release() == 1
        await restarted.worker.run_round()
        assert (await pipeline.notification(local["id"]))["status"] == "sent"
    assert len(pipeline.apns.requests) == 2


async def test_a_cancelled_scheduled_send_is_never_released(pipeline: Pipeline) -> None:
    await pipeline.register(timezone=TOKYO)
    notification = await scheduled(pipeline, tier="transactional", send_at_local="23:45")
    response = await pipeline.client.delete(f"/v1/notifications/{notification['id']}")
    assert response.status == 200
    assert (await response.json())["status"] == "cancelled"

    pipeline.clock.now = instant(notification["send_at"])
    assert await pipeline.release_and_deliver() == 0
    body = await pipeline.notification(notification["id"])
    assert body["status"] == "cancelled"
    assert pipeline.apns.requests == []


async def test_a_scheduled_send_superseded_before_its_moment_is_never_sent(
    pipeline: Pipeline,
) -> None:
    await pipeline.register(timezone=TOKYO)
    older = await scheduled(
        pipeline, tier="transactional", send_at_local="23:45", collapse_key="score", body="1-0"
    )
    newer = await scheduled(
        pipeline, tier="transactional", send_at_local="23:50", collapse_key="score", body="2-0"
    )
    body = await pipeline.notification(older["id"])
    assert (body["status"], body["reason"]) == ("dropped", "superseded")

    pipeline.clock.now = instant(newer["send_at"])
    assert await pipeline.release_and_deliver() == 1
    assert (await pipeline.notification(newer["id"]))["status"] == "sent"
    [request] = pipeline.apns.requests
    assert request.payload is not None
    assert request.payload["aps"]["alert"]["body"] == "2-0"


async def test_the_decision_at_release_names_the_rule_that_ended_it(pipeline: Pipeline) -> None:
    """Consent withdrawn, a cap reached or the time run out before release: each scheduled
    notification ends with the decision made at release, and the rule that made it."""
    await pipeline.register()
    await pipeline.preferences(promotional=True)
    due = pipeline.clock.now + timedelta(hours=1)
    schedule = {"send_at": due.isoformat()}
    withdrawn = await scheduled(pipeline, tier="behavioral", **schedule)
    promos = [await scheduled(pipeline, tier="promotional", **schedule) for _ in range(3)]
    short = await scheduled(pipeline, tier="transactional", ttl_seconds=60, **schedule)
    await pipeline.preferences(behavioral=False)

    pipeline.clock.now = due + timedelta(minutes=5)  # the release runs late
    assert await pipeline.release_and_deliver() == 5

    def ending(body: dict[str, Any]) -> tuple[str, str | None, str]:
        return body["status"], body["reason"], body["decision"]["rule"]

    assert ending(await pipeline.notification(withdrawn["id"])) == (
        "dropped",
        "opted_out",
        "consent",
    )
    assert ending(await pipeline.notification(short["id"])) == ("expired", "expired", "expiry")
    promo_endings = sorted([ending(await pipeline.notification(p["id"])) for p in promos], key=str)
    assert promo_endings == [
        ("dropped", "frequency_capped", "frequency_cap"),
        ("sent", None, "send"),
        ("sent", None, "send"),
    ]
    body = await pipeline.notification(short["id"])
    assert instant(body["decision"]["local_time"]) == pipeline.clock.now
