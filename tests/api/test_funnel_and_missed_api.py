"""The opt-in funnel (GET /v1/apps/{app}/permission-funnel), what a user missed
(GET /v1/users/{user_id}/missed), and forgetting a user's permission history."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db import session_factory
from gateway.models import PermissionEventRecord, PermissionFunnelDay, PermissionFunnelUser
from gateway.services.permission import FunnelWindow
from tests.api.conftest import OTHER_APP_KEY, Client, FakeClock, auth, register

STEPS = (
    "value_moment",
    "soft_ask_shown",
    "soft_ask_accepted",
    "soft_ask_declined",
    "os_prompt_shown",
    "os_granted",
    "os_denied",
    "os_provisional",
    "settings_prompt_shown",
    "re_enabled",
)
FUNNEL = "/v1/apps/demo/permission-funnel"


async def report(client: Client, user_id: str, at: datetime, event: str, **fields: Any) -> None:
    body = {"app": "demo", "platform": "ios", "event": event, "at": at.isoformat(), **fields}
    response = await client.post(f"/v1/users/{user_id}/permission-events", json=body)
    assert response.status == 201, await response.text()


async def funnel(client: Client, query: str = "", **headers: str) -> dict[str, Any]:
    response = await client.get(f"{FUNNEL}{query}", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def counts(**nonzero: int) -> dict[str, int]:
    return {step: nonzero.get(step, 0) for step in STEPS}


async def report_journeys(client: Client, clock: FakeClock) -> None:
    """Five users on their way to permission, four of them in the last 30 days."""
    day = clock.now - timedelta(days=3)
    for event in ("value_moment", "soft_ask_shown", "soft_ask_accepted", "os_prompt_shown"):
        await report(client, "u1", day, event)
    await report(client, "u1", day, "os_prompt_result", result="granted")

    day = clock.now - timedelta(days=2)
    for event in ("value_moment", "soft_ask_shown", "soft_ask_declined", "value_moment"):
        await report(client, "u2", day, event)

    day = clock.now - timedelta(days=1)
    for event in ("value_moment", "soft_ask_shown", "soft_ask_accepted", "os_prompt_shown"):
        await report(client, "u3", day, event, platform="android")
    await report(client, "u3", day, "os_prompt_result", result="denied", platform="android")
    await report(client, "u3", day, "settings_prompt_shown", platform="android")

    for event in ("value_moment", "soft_ask_shown", "soft_ask_accepted"):
        await report(client, "u4", day, event)
    await report(client, "u4", day, "os_prompt_result", result="provisional")

    await report(client, "u5", clock.now - timedelta(days=40), "value_moment")


async def test_counts_distinct_users_per_step_and_the_rates(
    client: Client, clock: FakeClock
) -> None:
    await report_journeys(client, clock)

    answer = await funnel(client)

    assert answer["counts"] == counts(
        value_moment=4,
        soft_ask_shown=4,
        soft_ask_accepted=3,
        soft_ask_declined=1,
        os_prompt_shown=2,
        os_granted=1,
        os_denied=1,
        os_provisional=1,
        settings_prompt_shown=1,
    )
    assert answer["rates"] == {
        "soft_ask_acceptance": 3 / 4,
        "os_grant_after_soft_ask": 1 / 3,
        "opt_in": 1 / 4,
    }
    assert (answer["app"], answer["platform"], answer["until"]) == ("demo", None, None)
    # the last 30 UTC days, today included
    assert datetime.fromisoformat(answer["since"]) == datetime(2026, 5, 17, tzinfo=UTC)


async def test_without_since_a_window_with_an_end_is_the_30_days_before_it(
    client: Client, clock: FakeClock
) -> None:
    await report_journeys(client, clock)
    until = clock.now - timedelta(days=2)

    answer = await funnel(client, f"?until={until.isoformat().replace('+00:00', 'Z')}")

    assert datetime.fromisoformat(answer["since"]) == until - timedelta(days=30)
    assert answer["counts"]["value_moment"] == 1  # u1, three days ago


async def test_one_platform(client: Client, clock: FakeClock) -> None:
    await report_journeys(client, clock)

    answer = await funnel(client, "?platform=ios")

    assert answer["counts"] == counts(
        value_moment=3,
        soft_ask_shown=3,
        soft_ask_accepted=2,
        soft_ask_declined=1,
        os_prompt_shown=1,
        os_granted=1,
        os_provisional=1,
    )
    assert answer["platform"] == "ios"


async def test_a_window(client: Client, clock: FakeClock) -> None:
    await report_journeys(client, clock)
    since = (clock.now - timedelta(days=45)).isoformat().replace("+00:00", "Z")
    until = (clock.now - timedelta(days=2)).isoformat().replace("+00:00", "Z")

    answer = await funnel(client, f"?since={since}&until={until}")

    # u5's value moment 40 days ago, u1's whole journey; u2's day starts at `until`
    assert answer["counts"] == counts(
        value_moment=2, soft_ask_shown=1, soft_ask_accepted=1, os_prompt_shown=1, os_granted=1
    )


async def test_rates_are_null_when_their_divisor_is_zero(client: Client, clock: FakeClock) -> None:
    assert (await funnel(client))["rates"] == {
        "soft_ask_acceptance": None,
        "os_grant_after_soft_ask": None,
        "opt_in": None,
    }
    await report(client, "u1", clock.now, "soft_ask_shown")
    assert (await funnel(client))["rates"] == {
        "soft_ask_acceptance": 0.0,
        "os_grant_after_soft_ask": None,
        "opt_in": 0.0,
    }


async def test_re_enabled_counts_users_whose_device_went_from_denied_to_granted(
    client: Client, clock: FakeClock
) -> None:
    await register(client, user_id="u1", permission="denied")
    by_answer = await register(client, user_id="u2", token="b" * 64, permission="denied")
    await register(client, user_id="u3", token="c" * 64, permission="provisional")
    clock.advance(days=1)
    await register(client, user_id="u1", permission="granted")
    await register(client, user_id="u1", permission="denied")  # and off again: still counted
    await report(
        client, "u2", clock.now, "os_prompt_result", result="granted", device_id=by_answer["id"]
    )
    await register(client, user_id="u3", token="c" * 64, permission="granted")

    answer = await funnel(client)

    assert answer["counts"]["re_enabled"] == 2
    assert answer["counts"]["os_granted"] == 1  # only u2's answer was a reported prompt


async def test_a_forgotten_user_leaves_the_funnel(client: Client, clock: FakeClock) -> None:
    await report_journeys(client, clock)
    assert (await client.delete("/v1/users/u1")).status == 204
    answer = await funnel(client)
    assert answer["counts"]["os_granted"] == 0
    assert answer["counts"]["value_moment"] == 3


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?since=yesterday", "since"),
        ("?since=2026-06-01T00:00:00", "since"),
        ("?until=2026-13-01T00:00:00Z", "until"),
        ("?since=2026-06-10T00:00:00Z&until=2026-06-10T00:00:00Z", "since"),
        ("?since=2026-06-11T00:00:00Z&until=2026-06-10T00:00:00Z", "since"),
        ("?platform=web", "platform"),
        ("?app=demo", "app"),
        ("?since=2026-06-01T00:00:00Z&since=2026-06-02T00:00:00Z", "since"),
    ],
)
async def test_bad_windows_are_a_422_naming_the_parameter(
    client: Client, query: str, field: str
) -> None:
    response = await client.get(f"{FUNNEL}{query}")
    assert response.status == 422, await response.text()
    assert [error["field"] for error in (await response.json())["errors"]] == [field]


async def test_an_unknown_app_is_refused(client: Client) -> None:
    response = await client.get("/v1/apps/nope/permission-funnel")
    assert (response.status, (await response.json())["code"]) == (422, "unknown_app")


async def test_a_key_limited_to_an_app_reads_only_that_apps_funnel(
    client: Client, clock: FakeClock
) -> None:
    await report_journeys(client, clock)
    response = await client.get("/v1/apps/other/permission-funnel", headers=auth(OTHER_APP_KEY))
    assert response.status == 200
    assert (await response.json())["counts"] == counts()


# -- the window, exactly ------------------------------------------------------------------------


def test_a_window_splits_into_whole_days_and_the_instants_around_them() -> None:
    at = datetime(2026, 6, 10, 15, 30, tzinfo=UTC)
    midnight = datetime(2026, 6, 10, tzinfo=UTC)

    window = FunnelWindow.of(at, at + timedelta(days=3))
    assert window.whole_days == (date(2026, 6, 11), date(2026, 6, 13))
    assert window.partial == (
        (at, midnight + timedelta(days=1)),
        (midnight + timedelta(days=3), at + timedelta(days=3)),
    )
    assert FunnelWindow.of(midnight, midnight + timedelta(days=2)).partial == ()
    inside_a_day = FunnelWindow.of(at, at + timedelta(hours=2))
    assert (inside_a_day.whole_days, inside_a_day.partial) == (
        None,
        ((at, at + timedelta(hours=2)),),
    )
    open_ended = FunnelWindow.of(at, None)
    assert open_ended.whole_days == (date(2026, 6, 11), None)
    assert open_ended.partial == ((at, midnight + timedelta(days=1)),)
    # a window given in another offset is the same instants
    paris = at.astimezone(ZoneInfo("Europe/Paris"))
    assert FunnelWindow.of(paris, None) == open_ended


async def test_counts_match_a_brute_force_count_for_any_window(
    client: Client, clock: FakeClock
) -> None:
    """Events around midnights, windows whose edges fall on, just before and just after them:
    the rollup plus the edges answer exactly what counting the events one by one does."""
    rng = random.Random(15)
    now = clock.now
    midnights = [
        datetime.combine((now - timedelta(days=n)).date(), time(), tzinfo=UTC) for n in range(5)
    ]
    reported: list[tuple[str, str, str, datetime]] = []  # user, platform, step, at
    kinds = ["value_moment", "soft_ask_shown", "soft_ask_accepted", "os_prompt_shown"]
    for index in range(60):
        user = f"u{rng.randrange(8)}"
        platform = rng.choice(["ios", "android"])
        base = rng.choice(midnights)
        at = base + rng.choice(
            [timedelta(0), -timedelta(microseconds=1), timedelta(hours=rng.uniform(-20, 20))]
        )
        at = min(at, now)
        if index % 5 == 4:
            result = rng.choice(["granted", "denied", "provisional"])
            await report(client, user, at, "os_prompt_result", result=result, platform=platform)
            reported.append((user, platform, f"os_{result}", at))
        else:
            event = rng.choice(kinds)
            await report(client, user, at, event, platform=platform)
            reported.append((user, platform, event, at))

    edges = [m + delta for m in midnights for delta in (timedelta(0), timedelta(microseconds=1))]
    edges += [at for *_, at in reported[:10]] + [now - timedelta(days=9)]
    read_from_the_rollup = 0
    windows: list[tuple[datetime, datetime | None]] = [
        (since, until) for since, until in (sorted(rng.sample(edges, 2)) for _ in range(25))
    ]
    windows += [(since, None) for since in rng.sample(edges, 10)]  # no end
    for since, until in windows:
        if since == until:
            continue
        for platform in (None, "ios"):
            query = f"?since={since.isoformat()}".replace("+", "%2B")
            if until is not None:
                query += f"&until={until.isoformat()}".replace("+", "%2B")
            if platform is not None:
                query += f"&platform={platform}"
            expected = counts(
                **{
                    step: len(
                        {
                            user
                            for user, on, reached, at in reported
                            if reached == step
                            and since <= at
                            and (until is None or at < until)
                            and platform in (None, on)
                        }
                    )
                    for step in STEPS
                }
            )
            assert (await funnel(client, query))["counts"] == expected, (since, until, platform)
            if FunnelWindow.of(since, until).whole_days is not None and any(expected.values()):
                read_from_the_rollup += 1
    assert read_from_the_rollup >= 5  # the windows did exercise whole days, not only edges


# -- what the user missed ----------------------------------------------------------------------


async def send(client: Client, user_id: str = "u1", **fields: Any) -> dict[str, Any]:
    body = {"user_id": user_id, "app": "demo", "body": "hello", **fields}
    response = await client.post("/v1/notifications", json=body)
    assert response.status == 202, await response.text()
    notification: dict[str, Any] = await response.json()
    return notification


async def missed(client: Client, query: str = "", user_id: str = "u1", **headers: str) -> Any:
    response = await client.get(f"/v1/users/{user_id}/missed{query}", headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_missed_counts_what_no_device_could_take_by_tier_and_category(
    client: Client, clock: FakeClock
) -> None:
    old = await send(client, category="order_shipped")
    clock.advance(days=31)
    await send(client, category="order_shipped")
    await send(client, category="order_shipped")
    await send(client, tier="transactional")
    await send(client, tier="behavioral", category="cart_reminder")
    not_opted_in = await send(client, category="weekly_sale")
    await send(client, app="other", category="order_shipped")
    await register(client, user_id="u2")
    sent = await send(client, user_id="u2", category="order_shipped")

    answer = await missed(client)

    assert old["reason"] == "no_active_devices" and not_opted_in["reason"] == "not_opted_in"
    assert sent["status"] == "queued"
    assert datetime.fromisoformat(answer.pop("since")) == clock.now - timedelta(days=30)
    assert answer == {
        "total": 5,
        "by_tier": {"transactional": 4, "behavioral": 1, "promotional": 0},
        "by_category": {"cart_reminder": 1, "order_shipped": 3},
    }
    assert (await missed(client, "?app=demo"))["total"] == 4
    assert (await missed(client, user_id="u2"))["total"] == 0
    since = (clock.now - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    assert (await missed(client, f"?since={since}&app=demo"))["total"] == 5


async def test_a_denied_device_is_no_device_to_deliver_to(client: Client) -> None:
    await register(client, permission="denied")
    await send(client, category="order_shipped")
    assert (await missed(client))["by_category"] == {"order_shipped": 1}


async def test_missed_sees_only_the_apps_the_key_may_use(client: Client) -> None:
    await send(client, category="order_shipped")
    await send(client, app="other", tier="behavioral")

    answer = await missed(client, **auth(OTHER_APP_KEY))

    assert answer["by_tier"] == {"transactional": 0, "behavioral": 1, "promotional": 0}
    response = await client.get("/v1/users/u1/missed?app=demo", headers=auth(OTHER_APP_KEY))
    assert (response.status, (await response.json())["code"]) == (403, "app_not_allowed")


@pytest.mark.parametrize(
    ("query", "field"), [("?since=soon", "since"), ("?app=", "app"), ("?tier=x", "tier")]
)
async def test_bad_missed_queries_are_a_422(client: Client, query: str, field: str) -> None:
    response = await client.get(f"/v1/users/u1/missed{query}")
    assert response.status == 422
    assert [error["field"] for error in (await response.json())["errors"]] == [field]


# -- forgetting --------------------------------------------------------------------------------


async def rows_of(engine: AsyncEngine, user_id: str) -> tuple[set[str], ...]:
    """The apps of the user's permission events and of their rows in each funnel rollup."""
    apps = []
    async with session_factory(engine)() as session:
        for table in (PermissionEventRecord, PermissionFunnelDay, PermissionFunnelUser):
            rows = await session.execute(sa.select(table.app).where(table.user_id == user_id))
            apps.append(set(rows.scalars()))
    return tuple(apps)


async def test_forgetting_a_user_erases_their_permission_history(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await register(client, permission="granted")
    await report(client, "u1", clock.now, "value_moment")
    await report(client, "u1", clock.now, "value_moment", app="other")
    await report(client, "u2", clock.now, "value_moment")

    assert (await client.delete("/v1/users/u1")).status == 204

    assert await rows_of(engine, "u1") == (set(), set(), set())
    assert await rows_of(engine, "u2") == ({"demo"}, {"demo"}, {"demo"})
    answer = await (await client.get("/v1/users/u1/soft-ask?app=demo&platform=ios")).json()
    assert answer["reason"] == "no_value_moment"


async def test_a_key_limited_to_an_app_forgets_only_that_apps_history(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await report(client, "u1", clock.now, "value_moment")
    await report(client, "u1", clock.now, "value_moment", app="other")

    response = await client.delete("/v1/users/u1", headers=auth(OTHER_APP_KEY))

    assert response.status == 204
    assert await rows_of(engine, "u1") == ({"demo"}, {"demo"}, {"demo"})
