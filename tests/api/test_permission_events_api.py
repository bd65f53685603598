"""POST /v1/users/{user_id}/permission-events: validation, idempotency by event_id, what an
event does to devices, the history a registration adds, the metric, scopes and app isolation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from gateway.api.app import create_app
from gateway.api.routes import ROUTES
from gateway.config import Scope
from gateway.db import session_factory
from gateway.models import PermissionEventRecord
from gateway.services import permission as permission_service
from tests.api.conftest import (
    FCM_TOKEN,
    IOS_TOKEN_2,
    OTHER_APP_KEY,
    Client,
    FakeClock,
    auth,
    make_settings,
    register,
    sha,
)
from tokens.models import TokenEvent

EVENTS = "/v1/users/u1/permission-events"


async def report(client: Client, user_id: str = "u1", **fields: Any) -> dict[str, Any]:
    body = {"app": "demo", "platform": "ios", **fields}
    response = await client.post(f"/v1/users/{user_id}/permission-events", json=body)
    assert response.status in (200, 201), await response.text()
    stored: dict[str, Any] = await response.json()
    return stored


async def permissions(client: Client, user_id: str = "u1") -> dict[str, str]:
    """The user's devices' permissions, by device id."""
    devices = (await (await client.get(f"/v1/users/{user_id}/devices")).json())["devices"]
    return {device["id"]: device["permission"] for device in devices}


async def stored_events(engine: AsyncEngine) -> list[PermissionEventRecord]:
    async with session_factory(engine)() as session:
        rows = await session.execute(
            select(PermissionEventRecord).order_by(col(PermissionEventRecord.id))
        )
        return list(rows.scalars())


async def test_an_event_is_stored_and_returned(client: Client, clock: FakeClock) -> None:
    response = await client.post(
        EVENTS, json={"app": "demo", "event": "value_moment", "platform": "ios"}
    )

    assert response.status == 201
    event = await response.json()
    assert isinstance(event["id"], int)
    assert datetime.fromisoformat(event.pop("at")) == clock.now
    assert datetime.fromisoformat(event.pop("recorded_at")) == clock.now
    assert {key: event[key] for key in event if key != "id"} == {
        "user_id": "u1",
        "app": "demo",
        "platform": "ios",
        "event": "value_moment",
        "result": None,
        "device_id": None,
        "event_id": None,
        "source": "reported",
        "reported_by": "full",
    }


async def test_at_is_kept_to_the_microsecond_in_utc(client: Client) -> None:
    event = await report(client, event="soft_ask_shown", at="2026-06-10T09:30:00.123456+02:00")
    assert event["at"] == "2026-06-10T07:30:00.123456Z"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event": None}, "event"),
        ({"event": "permission_granted"}, "event"),
        ({"event": "value_moment", "platform": None}, "platform"),
        ({"event": "value_moment", "platform": "windows"}, "platform"),
        ({"event": "value_moment", "result": "granted"}, "result"),
        ({"event": "os_prompt_shown", "result": "denied"}, "result"),
        ({"event": "os_prompt_result"}, "result"),
        ({"event": "os_prompt_result", "result": "maybe"}, "result"),
        ({"event": "value_moment", "at": "2026-06-15T12:00:00"}, "at"),
        ({"event": "value_moment", "at": "yesterday"}, "at"),
        ({"event": "value_moment", "event_id": ""}, "event_id"),
        ({"event": "value_moment", "event_id": "two words"}, "event_id"),
        ({"event": "value_moment", "event_id": "x" * 129}, "event_id"),
        ({"event": "value_moment", "device_id": ""}, "device_id"),
        ({"event": "value_moment", "device_id": "d" * 37}, "device_id"),
        ({"event": "value_moment", "app": ""}, "app"),
        ({"event": "value_moment", "colour": "blue"}, "colour"),
    ],
)
async def test_each_invalid_field_is_named_in_a_422(
    client: Client, fields: dict[str, Any], field: str
) -> None:
    merged = {"app": "demo", "platform": "ios", **fields}
    body = {key: value for key, value in merged.items() if value is not None}

    response = await client.post(EVENTS, json=body)

    assert response.status == 422, await response.text()
    problem = await response.json()
    assert problem["code"] == "invalid_request"
    assert [error["field"] for error in problem["errors"]] == [field]


@pytest.mark.parametrize("result", ["granted", "denied", "provisional"])
async def test_os_prompt_result_takes_each_answer(client: Client, result: str) -> None:
    event = await report(client, event="os_prompt_result", result=result)
    assert (event["event"], event["result"]) == ("os_prompt_result", result)


async def test_bodies_that_are_not_objects_and_unknown_apps(client: Client) -> None:
    response = await client.post(EVENTS, json=["value_moment"])
    assert response.status == 422
    response = await client.post(EVENTS, data=b"{not json")
    assert (response.status, (await response.json())["code"]) == (400, "invalid_json")
    response = await client.post(
        EVENTS, json={"app": "nope", "event": "value_moment", "platform": "ios"}
    )
    assert (response.status, (await response.json())["code"]) == (422, "unknown_app")


async def test_a_user_id_with_whitespace_is_refused(client: Client) -> None:
    response = await client.post(
        "/v1/users/u%201/permission-events",
        json={"app": "demo", "event": "value_moment", "platform": "ios"},
    )
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "user_id"


async def test_at_up_to_five_minutes_ahead_is_accepted_and_no_further(
    client: Client, clock: FakeClock
) -> None:
    limit = clock.now + timedelta(minutes=5)
    event = await report(client, event="value_moment", at=limit.isoformat())
    assert datetime.fromisoformat(event["at"]) == limit

    too_far = limit + timedelta(microseconds=1)
    response = await client.post(
        EVENTS,
        json={"app": "demo", "event": "value_moment", "platform": "ios", "at": too_far.isoformat()},
    )
    assert response.status == 422
    assert [error["field"] for error in (await response.json())["errors"]] == ["at"]


async def test_events_long_past_are_accepted(client: Client, clock: FakeClock) -> None:
    past = clock.now - timedelta(days=400)
    event = await report(client, event="value_moment", at=past.isoformat())
    assert datetime.fromisoformat(event["at"]) == past


async def test_a_repeated_event_id_answers_with_the_first_record(
    client: Client, engine: AsyncEngine, clock: FakeClock
) -> None:
    first = await report(client, event="soft_ask_shown", event_id="evt-1")
    clock.advance(minutes=1)

    again = await client.post(
        EVENTS,
        json={"app": "demo", "event": "soft_ask_declined", "platform": "ios", "event_id": "evt-1"},
    )

    assert again.status == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == first
    assert [event.event for event in await stored_events(engine)] == ["soft_ask_shown"]
    metrics = await (await client.get("/metrics")).text()
    assert (
        'pushgate_permission_events_total{app="demo",event="soft_ask_shown",'
        'platform="ios",result=""} 1.0' in metrics
    )
    assert 'event="soft_ask_declined"' not in metrics
    funnel = await (await client.get("/v1/apps/demo/permission-funnel")).json()
    assert funnel["counts"]["soft_ask_shown"] == 1
    assert funnel["counts"]["soft_ask_declined"] == 0


async def test_a_concurrent_repeat_that_loses_the_race_answers_with_the_winner(
    client: Client, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repeat looked for its event_id before the first was committed, found nothing, and
    then met it at the insert: it is rolled back (the device keeps its permission) and answered
    with the first record."""
    device = await register(client)
    first = await report(client, event="os_prompt_result", result="granted", event_id="evt-9")
    lookups = []
    find = permission_service._find_event_id

    async def too_early_once(*args: Any) -> Any:
        lookups.append(args)
        return None if len(lookups) == 1 else await find(*args)

    monkeypatch.setattr(permission_service, "_find_event_id", too_early_once)

    again = await client.post(
        EVENTS,
        json={
            "app": "demo",
            "event": "os_prompt_result",
            "result": "denied",
            "device_id": device["id"],
            "event_id": "evt-9",
        },
    )

    assert again.status == 200
    assert await again.json() == first
    assert len(lookups) == 2
    assert await permissions(client) == {device["id"]: "granted"}
    assert len(await stored_events(engine)) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'result="denied"' not in metrics


async def test_an_event_id_is_the_users_own_in_each_app(client: Client) -> None:
    first = await report(client, event="value_moment", event_id="evt-1")
    other_user = await report(client, "u2", event="value_moment", event_id="evt-1")
    other_app = await report(client, app="other", event="value_moment", event_id="evt-1")
    assert len({first["id"], other_user["id"], other_app["id"]}) == 3


async def test_events_without_event_id_are_never_merged(client: Client) -> None:
    first = await report(client, event="value_moment")
    second = await report(client, event="value_moment")
    assert first["id"] != second["id"]


async def test_the_counter_counts_each_stored_event_with_its_labels(client: Client) -> None:
    await report(client, event="value_moment")
    await report(client, event="value_moment", platform="android")
    await report(client, event="os_prompt_result", result="granted")
    await report(client, event="os_prompt_result", result="granted")

    metrics = await (await client.get("/metrics")).text()

    prefix = "pushgate_permission_events_total"
    assert f'{prefix}{{app="demo",event="value_moment",platform="ios",result=""}} 1.0' in metrics
    assert (
        f'{prefix}{{app="demo",event="value_moment",platform="android",result=""}} 1.0' in metrics
    )
    assert (
        f'{prefix}{{app="demo",event="os_prompt_result",platform="ios",result="granted"}} 2.0'
        in metrics
    )


# -- devices -----------------------------------------------------------------------------------


async def test_an_answer_for_a_device_sets_its_permission(
    client: Client, engine: AsyncEngine
) -> None:
    device = await register(client)

    event = await report(
        client, event="os_prompt_result", result="denied", device_id=device["id"], platform=None
    )

    assert (event["device_id"], event["platform"]) == (device["id"], "ios")
    assert await permissions(client) == {device["id"]: "denied"}
    async with session_factory(engine)() as session:
        trail = await session.execute(
            select(TokenEvent.kind, TokenEvent.reason).where(TokenEvent.device_id == device["id"])
        )
        assert ("permission", "denied") in [tuple(row) for row in trail.all()]


async def test_any_event_may_name_the_device_it_happened_on(client: Client) -> None:
    device = await register(client, platform="android", token=FCM_TOKEN)
    event = await report(client, event="soft_ask_shown", device_id=device["id"], platform=None)
    assert event["platform"] == "android"
    assert await permissions(client) == {device["id"]: "unknown"}


async def test_a_device_that_is_not_the_users_in_that_app_is_refused_alike(
    client: Client,
) -> None:
    mine = await register(client)
    someone_elses = await register(client, user_id="u2", token=IOS_TOKEN_2)
    other_app = await register(client, app="other", token=IOS_TOKEN_2)
    for device_id in ("no-such-device", someone_elses["id"], other_app["id"]):
        response = await client.post(
            EVENTS, json={"app": "demo", "event": "value_moment", "device_id": device_id}
        )
        assert response.status == 422, device_id
        problem = await response.json()
        assert [error["field"] for error in problem["errors"]] == ["device_id"]
        assert problem["detail"] == f"user 'u1' has no device '{device_id}' in app 'demo'"
    assert await permissions(client, "u2") == {someone_elses["id"]: "unknown"}
    assert await permissions(client) == {mine["id"]: "unknown", other_app["id"]: "unknown"}


async def test_a_platform_that_is_not_the_devices_is_refused(client: Client) -> None:
    device = await register(client)
    response = await client.post(
        EVENTS,
        json={
            "app": "demo",
            "event": "os_prompt_result",
            "result": "granted",
            "device_id": device["id"],
            "platform": "android",
        },
    )
    assert response.status == 422
    assert [error["field"] for error in (await response.json())["errors"]] == ["platform"]
    assert await permissions(client) == {device["id"]: "unknown"}
    matching = await report(client, event="value_moment", device_id=device["id"])
    assert matching["platform"] == "ios"


async def test_a_yes_without_device_goes_to_the_undecided_devices_of_that_platform(
    client: Client,
) -> None:
    unknown = await register(client)
    provisional = await register(client, token=IOS_TOKEN_2, permission="provisional")
    denied = await register(client, token="c" * 64, permission="denied")
    android = await register(client, platform="android", token=FCM_TOKEN)
    other_app = await register(client, app="other", token="d" * 64)

    await report(client, event="os_prompt_result", result="granted")

    assert await permissions(client) == {
        unknown["id"]: "granted",
        provisional["id"]: "granted",
        denied["id"]: "denied",
        android["id"]: "unknown",
        other_app["id"]: "unknown",
    }
    answer = await (await client.get("/v1/users/u1/soft-ask?app=demo&platform=ios")).json()
    assert answer["reason"] == "already_granted"


@pytest.mark.parametrize("result", ["denied", "provisional"])
async def test_other_answers_without_device_change_no_device(client: Client, result: str) -> None:
    device = await register(client)
    await report(client, event="os_prompt_result", result=result)
    assert await permissions(client) == {device["id"]: "unknown"}


async def test_a_registration_that_changes_the_permission_adds_it_to_the_history(
    client: Client, engine: AsyncEngine, clock: FakeClock
) -> None:
    device = await register(client, permission="granted")
    await register(client, permission="granted")  # unchanged: nothing new
    await register(client)  # no permission given: nothing
    clock.advance(days=1)
    await register(client, permission="denied")
    await register(client, permission="unknown")  # not an answer: kept on the device only
    await register(client, token=IOS_TOKEN_2)  # a new device without a permission: nothing

    history = [
        (event.event, event.result, event.source, event.device_id, event.previous_permission)
        for event in await stored_events(engine)
    ]

    assert history == [
        ("os_prompt_result", "granted", "registration", device["id"], None),
        ("os_prompt_result", "denied", "registration", device["id"], "granted"),
    ]
    metrics = await (await client.get("/metrics")).text()
    assert 'event="os_prompt_result",platform="ios",result="denied"} 1.0' in metrics


async def test_a_registration_from_denied_to_granted_re_enables(
    client: Client, clock: FakeClock
) -> None:
    await register(client, permission="denied")
    await register(client, user_id="u2", token=IOS_TOKEN_2, permission="provisional")
    clock.advance(days=2)
    await register(client, permission="granted")
    await register(client, user_id="u2", token=IOS_TOKEN_2, permission="granted")

    funnel = await (await client.get("/v1/apps/demo/permission-funnel")).json()

    assert funnel["counts"]["re_enabled"] == 1
    # a change seen at registration answers no prompt the app showed
    assert funnel["counts"]["os_granted"] == 0


# -- scopes and apps ---------------------------------------------------------------------------

SCOPED_KEYS = {scope: f"key-with-{scope.value}" for scope in Scope}
PERMISSION_PATHS = {
    "/v1/users/{user_id}/permission-events",
    "/v1/users/{user_id}/soft-ask",
    "/v1/apps/{app}/permission-funnel",
    "/v1/users/{user_id}/missed",
}


@pytest.fixture
async def scoped_client(
    engine: AsyncEngine,
    aiohttp_client: Callable[..., Awaitable[Client]],
    database_url: str,
    clock: FakeClock,
) -> Client:
    """The app with one key per scope, each holding that scope alone."""
    keys = [
        {
            "name": scope.value.replace(":", "-"),
            "key_sha256": sha(key),
            "allowed_tiers": ["transactional"],
            "scopes": [scope.value],
        }
        for scope, key in SCOPED_KEYS.items()
    ]
    settings = make_settings(database_url, api_keys=keys)
    return await aiohttp_client(create_app(settings, engine=engine, clock=clock))


def _example(path: str) -> str:
    return path.format(user_id="u1", app="demo") + (
        "?app=demo&platform=ios" if "soft-ask" in path else ""
    )


@pytest.mark.parametrize(
    "route",
    [route for route in ROUTES if route.path in PERMISSION_PATHS],
    ids=lambda route: f"{route.method} {route.path}",
)
async def test_each_endpoint_answers_only_keys_with_its_scope(scoped_client: Client, route) -> None:
    body = {"app": "demo", "event": "value_moment", "platform": "ios"}
    for scope, key in SCOPED_KEYS.items():
        response = await scoped_client.request(
            route.method,
            _example(route.path),
            headers=auth(key),
            json=body if route.method == "POST" else None,
        )
        if scope in route.scopes:
            assert response.status in (200, 201), (scope, await response.text())
        else:
            assert response.status == 403, scope
            problem = await response.json()
            assert problem["code"] == "scope_required"


def test_the_route_table_gives_the_scopes_each_caller_needs() -> None:
    scopes = {route.path: route.scopes for route in ROUTES if route.path in PERMISSION_PATHS}
    assert scopes == {
        "/v1/users/{user_id}/permission-events": (Scope.DEVICES,),
        "/v1/users/{user_id}/soft-ask": (Scope.DEVICES,),
        "/v1/apps/{app}/permission-funnel": (Scope.USERS_READ,),
        "/v1/users/{user_id}/missed": (Scope.USERS_READ,),
    }


async def test_a_key_limited_to_other_apps_may_not_name_this_one(client: Client) -> None:
    other = auth(OTHER_APP_KEY)
    requests = [
        client.post(
            EVENTS, json={"app": "demo", "event": "value_moment", "platform": "ios"}, headers=other
        ),
        client.get("/v1/users/u1/soft-ask?app=demo&platform=ios", headers=other),
        client.get("/v1/apps/demo/permission-funnel", headers=other),
        client.get("/v1/users/u1/missed?app=demo", headers=other),
    ]
    for request in requests:
        response = await request
        assert response.status == 403
        assert (await response.json())["code"] == "app_not_allowed"


async def test_a_key_limited_to_other_apps_cannot_reach_this_apps_device(
    client: Client,
) -> None:
    device = await register(client, permission="provisional")
    other = auth(OTHER_APP_KEY)

    response = await client.post(
        EVENTS,
        json={
            "app": "other",
            "event": "os_prompt_result",
            "result": "denied",
            "device_id": device["id"],
        },
        headers=other,
    )
    absent = await client.post(
        EVENTS,
        json={
            "app": "other",
            "event": "os_prompt_result",
            "result": "denied",
            "device_id": "missing",
        },
        headers=other,
    )

    assert response.status == absent.status == 422
    assert (await response.json())["errors"][0]["field"] == "device_id"
    assert (await absent.json())["errors"][0]["field"] == "device_id"
    assert await permissions(client) == {device["id"]: "provisional"}


async def test_an_event_id_known_in_another_app_is_not_revealed(client: Client) -> None:
    await report(client, event="soft_ask_declined", event_id="evt-7")
    response = await client.post(
        EVENTS,
        json={"app": "other", "event": "value_moment", "platform": "ios", "event_id": "evt-7"},
        headers=auth(OTHER_APP_KEY),
    )
    assert response.status == 201
    assert (await response.json())["event"] == "value_moment"
