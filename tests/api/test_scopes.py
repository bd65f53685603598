"""Who may do what: API key scopes on every route, app isolation, ownership of notifications,
and the history of every consent change (both databases)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.api.app import create_app
from gateway.api.keys import SERVICES
from gateway.api.routes import ROUTES
from gateway.config import ConfigError, Scope, Settings, load_settings
from gateway.db import upgrade_database
from gateway.server import StartupError, serve
from tests.api.conftest import (
    FCM_TOKEN,
    FULL_KEY,
    IOS_TOKEN,
    IOS_TOKEN_2,
    Client,
    FakeClock,
    auth,
    make_settings,
    sha,
)

ALL_TIERS = ["transactional", "behavioral", "promotional"]


def key(name: str, *, scopes: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "key_sha256": sha(f"{name}-secret")}
    entry["allowed_tiers"] = fields.pop("allowed_tiers", ALL_TIERS)
    if scopes is not None:
        entry["scopes"] = scopes
    return {**entry, **fields}


def secret(name: str) -> dict[str, str]:
    return auth(f"{name}-secret")


KEYS = [
    {"name": "full", "key_sha256": sha(FULL_KEY), "allowed_tiers": ALL_TIERS, "scopes": ["*"]},
    *(key(f"only-{scope.value}", scopes=[scope.value]) for scope in Scope),
    key("unscoped"),  # no scopes line at all: may only send
    key("sender-a", scopes=["send"]),
    key("sender-b", scopes=["send"]),
    key("sender-reader", scopes=["send", "users:read"]),
    key("support", scopes=["users:read"]),
    key("backend", scopes=["send", "devices", "preferences", "users:delete"]),
    key("other-app", scopes=["*"], apps=["other"]),
    key("other-backend", scopes=["devices", "users:delete", "users:read"], apps=["other"]),
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, api_keys=KEYS)


Make = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]


@pytest.fixture
async def sqlite_client(aiohttp_client: Make, tmp_path: Any, clock: FakeClock) -> Client:
    """The scope check runs before any query, so the matrix needs one database, not two."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'scopes.db'}", api_keys=KEYS)
    client: Client = await aiohttp_client(create_app(settings, clock=clock))
    await upgrade_database(client.app[SERVICES].context.engine)
    return client


async def _json(response: Any) -> Any:
    return await response.json()


# -- the matrix -----------------------------------------------------------------------------


def _path(template: str) -> str:
    return re.sub(r"{(\w+)}", lambda match: f"x-{match.group(1)}", template)


PROTECTED = [route for route in ROUTES if not route.public]
CASES = [(route, scope) for route in PROTECTED for scope in Scope]


@pytest.mark.parametrize(
    ("route", "scope"),
    CASES,
    ids=[f"{route.method} {route.path} with {scope.value}" for route, scope in CASES],
)
async def test_each_scope_on_each_route(sqlite_client: Client, route: Any, scope: Scope) -> None:
    """Built from the route table itself: a key holding only ``scope`` gets past the scope
    check exactly when the route lists it (or lists none); otherwise 403 scope_required
    naming what was needed."""
    body = {} if route.method in ("POST", "PUT", "PATCH") else None
    response = await sqlite_client.request(
        route.method, _path(route.path), json=body, headers=secret(f"only-{scope.value}")
    )
    allowed = not route.scopes or scope in route.scopes
    if allowed:
        assert response.status != 403, await response.text()
        return
    assert response.status == 403, await response.text()
    problem = await response.json()
    assert problem["code"] == "scope_required"
    for needed in route.scopes:
        assert needed.value in problem["detail"]


async def test_a_key_without_scopes_may_only_send(client: Client) -> None:
    headers = secret("unscoped")
    response = await client.post(
        "/v1/notifications", json={"user_id": "u1", "app": "demo", "body": "x"}, headers=headers
    )
    assert response.status == 202
    for method, path, body in [
        ("PATCH", "/v1/users/u1/preferences", {"promotional": True}),
        ("DELETE", "/v1/users/u1", None),
        ("GET", "/v1/users/u1/devices", None),
        ("POST", "/v1/devices", {}),
        ("GET", "/metrics", None),
    ]:
        refused = await client.request(method, path, json=body, headers=headers)
        assert refused.status == 403, (method, path)
        assert (await refused.json())["code"] == "scope_required"


def test_an_unknown_scope_stops_the_start_up_naming_it(database_url: str) -> None:
    with pytest.raises(ConfigError, match="users:write"):
        make_settings(database_url, api_keys=[key("typo", scopes=["send", "users:write"])])


async def test_every_key_with_all_scopes_behaves_as_before(client: Client) -> None:
    # "full" has ["*"]: everything the suite did before scopes existed still works
    assert (await client.get("/metrics")).status == 200
    assert (await client.patch("/v1/users/u1/preferences", json={"timezone": "UTC"})).status == 200
    assert (await client.delete("/v1/users/u1")).status == 204


async def test_the_openapi_document_states_each_operations_scope(client: Client) -> None:
    document = await (await client.get("/openapi.json")).json()
    for route in PROTECTED:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["x-scopes"] == [scope.value for scope in route.scopes]
        for scope in route.scopes:
            assert f"`{scope.value}`" in operation["description"]


# -- app isolation ----------------------------------------------------------------------------


async def _seed_two_apps(client: Client) -> dict[str, Any]:
    """alice has a device and a deferred notification in each app."""
    seeded: dict[str, Any] = {}
    for app, token in (("demo", IOS_TOKEN), ("other", IOS_TOKEN_2)):
        response = await client.post(
            "/v1/devices",
            json={"user_id": "alice", "app": app, "platform": "ios", "token": token},
        )
        assert response.status == 201
        seeded[f"{app}_device"] = (await response.json())["id"]
        sent = await client.post(
            "/v1/notifications",
            json={"user_id": "alice", "app": app, "tier": "transactional", "body": "x"},
        )
        assert sent.status == 202
        seeded[f"{app}_notification"] = (await sent.json())["id"]
    await client.put("/v1/users/alice/preferences", json={"promotional": True})
    return seeded


async def test_a_key_limited_to_one_app_never_sees_or_touches_another(client: Client) -> None:
    seeded = await _seed_two_apps(client)
    limited = secret("other-app")

    devices = await _json(await client.get("/v1/users/alice/devices", headers=limited))
    assert [device["app"] for device in devices["devices"]] == ["other"]
    for path in (f"/v1/notifications/{seeded['demo_notification']}",):
        assert (await client.get(path, headers=limited)).status == 404
        assert (await client.delete(path, headers=limited)).status == 404
    gone = await client.delete(f"/v1/devices/{seeded['demo_device']}", headers=limited)
    assert gone.status == 404
    sent = await client.post(
        "/v1/notifications",
        json={"user_id": "alice", "app": "demo", "tier": "transactional", "body": "x"},
        headers=limited,
    )
    assert (sent.status, (await sent.json())["code"]) == (403, "app_not_allowed")
    registered = await client.post(
        "/v1/devices",
        json={"user_id": "alice", "app": "demo", "platform": "android", "token": FCM_TOKEN},
        headers=limited,
    )
    assert (registered.status, (await registered.json())["code"]) == (403, "app_not_allowed")
    # its own app's data is there for it
    own = await client.get(f"/v1/notifications/{seeded['other_notification']}", headers=limited)
    assert own.status == 200
    # and nothing of the other app changed
    still = await client.get(f"/v1/notifications/{seeded['demo_notification']}")
    assert still.status == 200 and (await still.json())["status"] != "cancelled"
    assert len((await _json(await client.get("/v1/users/alice/devices")))["devices"]) == 2


async def test_forgetting_a_user_with_an_app_limited_key_erases_only_that_app(
    client: Client,
) -> None:
    seeded = await _seed_two_apps(client)
    response = await client.delete("/v1/users/alice", headers=secret("other-backend"))
    assert response.status == 204

    devices = (await _json(await client.get("/v1/users/alice/devices")))["devices"]
    assert [device["app"] for device in devices] == ["demo"]
    assert (await client.get(f"/v1/notifications/{seeded['other_notification']}")).status == 404
    assert (await client.get(f"/v1/notifications/{seeded['demo_notification']}")).status == 200
    # the preferences are the user's across apps: only a key without an app limit erases them
    preferences = await _json(await client.get("/v1/users/alice/preferences"))
    assert preferences["promotional"] is True
    history = await _json(await client.get("/v1/users/alice/preferences/history"))
    assert len(history["history"]) == 1

    assert (await client.delete("/v1/users/alice")).status == 204
    assert (await _json(await client.get("/v1/users/alice/devices")))["devices"] == []
    assert (await client.get(f"/v1/notifications/{seeded['demo_notification']}")).status == 404
    preferences = await _json(await client.get("/v1/users/alice/preferences"))
    assert (preferences["promotional"], preferences["updated_at"]) == (False, None)
    assert (await _json(await client.get("/v1/users/alice/preferences/history")))["history"] == []


# -- ownership ---------------------------------------------------------------------------------


async def test_a_send_only_key_reads_and_cancels_only_what_it_sent(client: Client) -> None:
    await client.post(
        "/v1/devices", json={"user_id": "u1", "app": "demo", "platform": "ios", "token": IOS_TOKEN}
    )
    await client.put("/v1/users/u1/preferences", json={"timezone": "Australia/Sydney"})
    body = {"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"}  # 22:00 there
    sent = await client.post("/v1/notifications", json=body, headers=secret("sender-a"))
    assert (await sent.json())["status"] == "deferred"
    path = f"/v1/notifications/{(await sent.json())['id']}"

    # another send-only key: as if it did not exist
    assert (await client.get(path, headers=secret("sender-b"))).status == 404
    assert (await client.delete(path, headers=secret("sender-b"))).status == 404
    # a key that may read any user's notifications sees it, but may not cancel it
    assert (await client.get(path, headers=secret("support"))).status == 200
    refused = await client.delete(path, headers=secret("sender-reader"))
    assert (refused.status, (await refused.json())["code"]) == (403, "not_owner")
    # the sender reads and cancels it
    assert (await client.get(path, headers=secret("sender-a"))).status == 200
    cancelled = await client.delete(path, headers=secret("sender-a"))
    assert (await cancelled.json())["status"] == "cancelled"


async def test_a_key_with_every_scope_may_cancel_any_keys_notification(client: Client) -> None:
    await client.post(
        "/v1/devices", json={"user_id": "u1", "app": "demo", "platform": "ios", "token": IOS_TOKEN}
    )
    await client.put("/v1/users/u1/preferences", json={"timezone": "Australia/Sydney"})
    body = {"user_id": "u1", "app": "demo", "tier": "behavioral", "body": "x"}
    sent = await _json(await client.post("/v1/notifications", json=body, headers=secret("backend")))
    cancelled = await client.delete(f"/v1/notifications/{sent['id']}")
    assert cancelled.status == 200


# -- consent history ---------------------------------------------------------------------------


async def test_every_preference_change_is_kept_with_who_and_what(
    client: Client, clock: FakeClock
) -> None:
    backend = secret("backend")
    await client.patch("/v1/users/u1/preferences", json={"promotional": True}, headers=backend)
    clock.advance(minutes=1)
    await client.patch("/v1/users/u1/preferences", json={"promotional": True}, headers=backend)
    clock.advance(minutes=1)
    await client.put(
        "/v1/users/u1/preferences",
        json={"timezone": "Europe/Paris", "quiet_hours": {"start": "23:00", "end": "07:00"}},
    )

    history = await _json(await client.get("/v1/users/u1/preferences/history"))
    changes = history["history"]
    assert [change["by"] for change in changes] == ["full", "backend"]  # newest first
    assert changes[0]["changes"] == {
        "timezone": [None, "Europe/Paris"],
        "promotional": [True, None],  # PUT returns the fields it leaves out to their defaults
        "quiet_hours": [None, {"start": "23:00", "end": "07:00"}],
    }
    assert changes[1]["changes"] == {"promotional": [None, True]}  # the repeat changed nothing
    assert changes[0]["at"] > changes[1]["at"]
    assert history["next_cursor"] is None


async def test_the_history_pages_newest_first(client: Client, clock: FakeClock) -> None:
    for minute in range(5):
        clock.advance(minutes=1)
        await client.patch("/v1/users/u1/preferences", json={"behavioral": minute % 2 == 0})
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = await _json(await client.get(f"/v1/users/u1/preferences/history{query}"))
        seen += [change["at"] for change in page["history"]]
        cursor = page["next_cursor"]
    assert cursor is None
    assert seen == sorted(seen, reverse=True) and len(seen) == 5


@pytest.mark.parametrize("query", ["?cursor=not-a-cursor", "?limit=0", "?limit=201", "?limit=x"])
async def test_a_bad_page_request_is_a_422(client: Client, query: str) -> None:
    response = await client.get(f"/v1/users/u1/preferences/history{query}")
    assert response.status == 422
    assert (await response.json())["code"] == "invalid_request"


async def test_reading_the_history_needs_users_read(client: Client) -> None:
    refused = await client.get("/v1/users/u1/preferences/history", headers=secret("backend"))
    assert (await refused.json())["code"] == "scope_required"
    allowed = await client.get("/v1/users/u1/preferences/history", headers=secret("support"))
    assert allowed.status == 200


# -- start-up ----------------------------------------------------------------------------------


async def test_the_demo_key_beyond_loopback_stops_the_start_up(tmp_path: Any) -> None:
    settings = load_settings(
        "config.example.toml",
        server={"host": "0.0.0.0", "port": 0},  # noqa: S104 - the point of the test
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/x.db"},
    )
    with pytest.raises(StartupError, match="demo key"):
        await serve(settings, _role_api())


async def test_the_start_up_log_lists_each_key_never_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway.server import log_api_keys  # noqa: PLC0415

    settings = make_settings("sqlite+aiosqlite:///:memory:", api_keys=KEYS)
    with caplog.at_level(logging.INFO, logger="gateway.server"):
        log_api_keys(settings)
    assert "API key backend: scopes send, devices, preferences, users:delete" in caplog.text
    assert (
        "API key other-app: scopes all; tiers transactional, behavioral, promotional; "
        "apps other" in caplog.text
    )
    assert "backend-secret" not in caplog.text and sha("backend-secret") not in caplog.text


def _role_api() -> Any:
    from gateway.runtime import Role  # noqa: PLC0415

    return Role.API
