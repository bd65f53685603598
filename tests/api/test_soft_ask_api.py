"""GET /v1/users/{user_id}/soft-ask: each rule of the soft ask end to end, through the events the
app reports and the devices it registers. The rules themselves are tested in depth in
tests/policies/test_soft_ask.py; here each row checks that the gateway feeds them right.

Each scenario is a timeline in days from the test's now (negative: in the past), to the minute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.api.app import create_app
from gateway.db import session_factory
from tests.api.conftest import (
    FCM_TOKEN,
    FULL_KEY,
    IOS_TOKEN_2,
    Client,
    FakeClock,
    make_settings,
    register,
)
from tokens.models import Device

SOFT_ASK = "/v1/users/u1/soft-ask?app=demo&platform=ios"


@dataclass(frozen=True)
class Scenario:
    events: list[tuple[float, str] | tuple[float, str, str]]
    """(day, event) or (day, "os_prompt_result", result)"""
    action: str
    reason: str
    retry_in_days: float | None = None
    devices: list[str] = field(default_factory=list)
    """permissions of the user's active iOS devices, registered 100 days ago"""


SCENARIOS = {
    "nothing reported": Scenario([], "none", "no_value_moment"),
    "1: a device granted": Scenario(
        [(-1, "value_moment")], "none", "already_granted", devices=["granted"]
    ),
    "1: granted beats a denial in the history": Scenario(
        [(-9, "os_prompt_result", "denied"), (-1, "value_moment")],
        "none",
        "already_granted",
        devices=["denied", "granted"],
    ),
    "2: denied, value moment since": Scenario(
        [(-10, "os_prompt_result", "denied"), (-1, "value_moment")],
        "show_settings_prompt",
        "eligible",
    ),
    "2: denied, no value moment since": Scenario(
        [(-10, "value_moment"), (-9, "os_prompt_result", "denied")], "none", "os_denied"
    ),
    "2: a device registered denied, value moment since": Scenario(
        [(-1, "value_moment")], "show_settings_prompt", "eligible", devices=["denied"]
    ),
    "2: a device registered denied, no value moment since": Scenario(
        [(-101, "value_moment")], "none", "os_denied", devices=["denied"]
    ),
    "2: settings screen in its cooldown": Scenario(
        [
            (-40, "os_prompt_result", "denied"),
            (-10, "settings_prompt_shown"),
            (-1, "value_moment"),
        ],
        "none",
        "os_denied",
        retry_in_days=20,
    ),
    "2: settings screen after its cooldown and a value moment": Scenario(
        [
            (-70, "os_prompt_result", "denied"),
            (-31, "settings_prompt_shown"),
            (-1, "value_moment"),
        ],
        "show_settings_prompt",
        "eligible",
    ),
    "2: settings screen shown as often as allowed": Scenario(
        [
            (-90, "os_prompt_result", "denied"),
            (-80, "settings_prompt_shown"),
            (-40, "settings_prompt_shown"),
            (-1, "value_moment"),
        ],
        "none",
        "max_settings_prompts",
    ),
    "3: soft ask shown as often as allowed": Scenario(
        [
            (-60, "soft_ask_shown"),
            (-40, "soft_ask_shown"),
            (-20, "soft_ask_shown"),
            (-1, "value_moment"),
        ],
        "none",
        "max_soft_asks",
    ),
    "4: no value moment yet": Scenario([(-3, "os_prompt_shown")], "none", "no_value_moment"),
    "5: declined three days ago": Scenario(
        [(-5, "value_moment"), (-4, "soft_ask_shown"), (-3, "soft_ask_declined")],
        "none",
        "declined_recently",
        retry_in_days=11,
    ),
    "5: cooldown over, no value moment since": Scenario(
        [(-20, "value_moment"), (-19, "soft_ask_shown"), (-15, "soft_ask_declined")],
        "none",
        "awaiting_value_moment",
    ),
    "5: cooldown over, value moment since": Scenario(
        [
            (-20, "value_moment"),
            (-19, "soft_ask_shown"),
            (-15, "soft_ask_declined"),
            (-1, "value_moment"),
        ],
        "show_soft_ask",
        "eligible",
    ),
    "5: declined a minute ahead, from a fast device clock": Scenario(
        [(-1, "value_moment"), (1 / 1440, "soft_ask_declined")],
        "none",
        "declined_recently",
        retry_in_days=14 + 1 / 1440,
    ),
    "6: accepted, OS prompt answer not reported": Scenario(
        [(-1, "value_moment"), (-1, "soft_ask_shown"), (-1, "soft_ask_accepted")],
        "none",
        "os_prompt_pending",
    ),
    "7: a value moment": Scenario([(-1, "value_moment")], "show_soft_ask", "eligible"),
    "7: provisional, asked for full permission again": Scenario(
        [(-2, "value_moment"), (-2, "soft_ask_accepted"), (-2, "os_prompt_result", "provisional")],
        "show_soft_ask",
        "eligible",
        devices=["provisional"],
    ),
    "7: unknown devices count as not asked": Scenario(
        [(-1, "value_moment")], "show_soft_ask", "eligible", devices=["unknown", "unknown"]
    ),
}

IOS_TOKENS = ["1" * 64, "2" * 64, "3" * 64]


def days_from(now: datetime, days: float) -> datetime:
    return now + timedelta(minutes=round(days * 1440))


async def report(client: Client, user_id: str = "u1", **fields: Any) -> None:
    body = {"app": "demo", "platform": "ios", **fields}
    response = await client.post(f"/v1/users/{user_id}/permission-events", json=body)
    assert response.status == 201, await response.text()


async def soft_ask(client: Client, url: str = SOFT_ASK) -> dict[str, Any]:
    response = await client.get(url)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def report_timeline(client: Client, clock: FakeClock, scenario: Scenario) -> None:
    now = clock.now
    clock.now = days_from(now, -100)
    for index, permission in enumerate(scenario.devices):
        await register(client, token=IOS_TOKENS[index], permission=permission)
    clock.now = now
    for entry in scenario.events:
        day, event, *result = entry
        at = days_from(clock.now, day)
        await report(
            client, event=event, at=at.isoformat(), **({"result": result[0]} if result else {})
        )


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
async def test_each_rule_through_the_api(
    client: Client, clock: FakeClock, scenario: Scenario
) -> None:
    await report_timeline(client, clock, scenario)

    answer = await soft_ask(client)

    retry_at = answer.pop("retry_at")
    assert answer == {"action": scenario.action, "reason": scenario.reason}
    if scenario.retry_in_days is None:
        assert retry_at is None
    else:
        assert datetime.fromisoformat(retry_at) == days_from(clock.now, scenario.retry_in_days)


async def set_device(engine: AsyncEngine, device_id: str, **values: str) -> None:
    async with session_factory(engine)() as session, session.begin():
        await session.execute(sa.update(Device).where(Device.id == device_id).values(**values))


async def test_only_active_devices_count(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    await report(client, event="value_moment", at=(clock.now - timedelta(days=1)).isoformat())
    granted = await register(client, permission="granted")
    assert (await soft_ask(client))["reason"] == "already_granted"

    await set_device(engine, granted["id"], status="invalid")  # the app was uninstalled

    assert (await soft_ask(client))["action"] == "show_soft_ask"


async def test_a_denied_device_without_history_is_seen_until_it_goes_stale(
    client: Client, clock: FakeClock, engine: AsyncEngine
) -> None:
    """A device that was denied before the gateway kept the history: only the device says so."""
    await report(client, event="value_moment", at=(clock.now - timedelta(days=1)).isoformat())
    denied = await register(client, token=IOS_TOKEN_2)
    await set_device(engine, denied["id"], permission="denied")
    assert (await soft_ask(client))["action"] == "show_settings_prompt"

    await set_device(engine, denied["id"], status="stale")

    assert (await soft_ask(client))["action"] == "show_soft_ask"


async def test_each_platform_and_app_has_its_own_history(client: Client, clock: FakeClock) -> None:
    yesterday = (clock.now - timedelta(days=1)).isoformat()
    await report(client, event="value_moment", at=yesterday)
    await report(client, event="soft_ask_declined", at=yesterday, platform="android")
    await register(client, platform="android", token=FCM_TOKEN, permission="granted")
    await report(client, app="other", event="soft_ask_declined", at=yesterday)

    assert (await soft_ask(client))["action"] == "show_soft_ask"
    android = await soft_ask(client, "/v1/users/u1/soft-ask?app=demo&platform=android")
    assert android["reason"] == "already_granted"
    other = await soft_ask(client, "/v1/users/u1/soft-ask?app=other&platform=ios")
    assert other["reason"] == "no_value_moment"
    someone_else = await soft_ask(client, "/v1/users/u2/soft-ask?app=demo&platform=ios")
    assert someone_else["reason"] == "no_value_moment"


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (["soft_ask_accepted", "os_prompt_result"], "eligible"),
        (["os_prompt_result", "soft_ask_accepted"], "os_prompt_pending"),
    ],
)
async def test_events_at_the_same_instant_keep_the_order_they_were_reported_in(
    client: Client, clock: FakeClock, order: list[str], reason: str
) -> None:
    at = (clock.now - timedelta(days=1)).isoformat()
    await report(client, event="value_moment", at=at)
    for event in order:
        extra = {"result": "provisional"} if event == "os_prompt_result" else {}
        await report(client, event=event, at=at, **extra)

    assert (await soft_ask(client))["reason"] == reason


async def test_the_answer_moves_with_the_clock(client: Client, clock: FakeClock) -> None:
    await report(client, event="value_moment")
    await report(client, event="soft_ask_shown")
    await report(client, event="soft_ask_declined")
    answer = await soft_ask(client)
    assert answer["reason"] == "declined_recently"

    clock.now = datetime.fromisoformat(answer["retry_at"])
    assert (await soft_ask(client))["reason"] == "awaiting_value_moment"
    await report(client, event="value_moment")
    assert (await soft_ask(client))["action"] == "show_soft_ask"


async def test_the_limits_come_from_the_permission_section(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    database_url: str,
    clock: FakeClock,
) -> None:
    settings = make_settings(
        database_url, permission={"max_soft_asks": 1, "decline_cooldown_days": 2}
    )
    client = await aiohttp_client(
        create_app(settings, engine=engine, clock=clock),
        headers={"Authorization": f"Bearer {FULL_KEY}"},
    )
    await report(client, event="value_moment")
    await report(client, event="soft_ask_declined")
    answer = await soft_ask(client)
    assert datetime.fromisoformat(answer["retry_at"]) == clock.now + timedelta(days=2)
    await report(client, event="soft_ask_shown")
    assert (await soft_ask(client))["reason"] == "max_soft_asks"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?app=demo", "platform"),
        ("?app=demo&platform=windows", "platform"),
        ("?app=demo&platform=ios&colour=blue", "colour"),
        ("?app=demo&platform=ios&platform=android", "platform"),
    ],
)
async def test_bad_queries_are_a_422_naming_the_parameter(
    client: Client, query: str, field: str
) -> None:
    response = await client.get(f"/v1/users/u1/soft-ask{query}")
    assert response.status == 422
    assert [error["field"] for error in (await response.json())["errors"]] == [field]


async def test_an_app_is_needed_when_several_are_configured(client: Client) -> None:
    response = await client.get("/v1/users/u1/soft-ask?platform=ios")
    assert response.status == 422
    unknown = await client.get("/v1/users/u1/soft-ask?app=nope&platform=ios")
    assert (unknown.status, (await unknown.json())["code"]) == (422, "unknown_app")


async def test_the_openapi_document_lists_the_query_parameters(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/users/{user_id}/soft-ask"]["get"]
    parameters = {(p["name"], p["in"]): p for p in operation["parameters"]}
    assert parameters[("platform", "query")]["required"] is True
    assert parameters[("app", "query")]["required"] is False
    platform = parameters[("platform", "query")]["schema"]["$ref"].rsplit("/", 1)[1]
    assert document["components"]["schemas"][platform]["enum"] == ["ios", "android"]
    funnel = document["paths"]["/v1/apps/{app}/permission-funnel"]["get"]["parameters"]
    assert {(p["name"], p["in"]) for p in funnel} == {
        ("app", "path"),
        ("since", "query"),
        ("until", "query"),
        ("platform", "query"),
    }
